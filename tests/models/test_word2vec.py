"""word2vec: the hand-written SGNS gradient equals autograd's; subsampling, vocabulary and 3CosAdd
equal gensim's; the noise table follows count^0.75; training separates two synthetic topics."""
from __future__ import annotations

import pytest
import torch

from deepatlas.models.word2vec import (NOISE_TABLE, Vocab, Word2Vec, Word2VecConfig, analogy_accuracy,
                                       bag_of_words_vectors, nearest, sgns_grad, sgns_loss, words)


def test_sgns_gradient_equals_autograd():
    g = torch.Generator().manual_seed(0)
    v, u_pos, u_neg = (torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
                       for s in ((6, 8), (6, 8), (6, 5, 8)))
    sgns_loss(v, u_pos, u_neg).backward()
    ours = sgns_grad(v.detach(), u_pos.detach(), u_neg.detach())
    for got, want in zip(ours, (v.grad, u_pos.grad, u_neg.grad)):
        torch.testing.assert_close(got, want)


def corpus() -> list[str]:
    text = ("the king spoke to the queen . the man spoke to the woman . a letter came . " * 30
            + "she said that he said nothing . " * 50 + "rare words appear once only here")
    return words(text)


def test_vocab_and_subsampling_equal_gensim():
    gensim = pytest.importorskip("gensim")
    tokens = corpus()
    ref = gensim.models.Word2Vec([tokens], min_count=5, sample=1e-2, vector_size=8, epochs=1, workers=1)
    vocab = Vocab(tokens, min_count=5)
    assert set(vocab.words) == set(ref.wv.index_to_key)
    keep = vocab.keep_probs(1e-2)
    for w in vocab.words:   # gensim stores P(keep) as an integer threshold, P · 2^32
        assert abs(float(keep[vocab.index[w]]) - ref.wv.get_vecattr(w, "sample_int") / 2 ** 32) < 1e-6


def test_noise_table_follows_count_to_the_075():
    vocab = Vocab(corpus(), min_count=1)
    model = Word2Vec(vocab, Word2VecConfig(dim=4))
    share = torch.bincount(model.noise_table, minlength=len(vocab)).float() / model.noise_table.numel()
    want = vocab.counts.float() ** 0.75 / (vocab.counts.float() ** 0.75).sum()
    torch.testing.assert_close(share, want, atol=2 / NOISE_TABLE + 1e-6, rtol=1e-3)


def test_3cosadd_equals_gensim_most_similar():
    gensim = pytest.importorskip("gensim")
    g = torch.Generator().manual_seed(1)
    names = [f"w{i}" for i in range(40)]
    vectors = torch.randn(40, 10, generator=g)
    kv = gensim.models.KeyedVectors(10)
    kv.add_vectors(names, vectors.numpy())
    index = {w: i for i, w in enumerate(names)}
    for a, b, c in [(0, 1, 2), (5, 9, 13), (20, 3, 7), (11, 12, 30)]:
        want = kv.most_similar(positive=[names[b], names[c]], negative=[names[a]], topn=1)[0][0]
        acc, n = analogy_accuracy(vectors, index, [(names[a], names[b], names[c], want)])
        assert (acc, n) == (1.0, 1)


@pytest.mark.parametrize("sg", [True, False])
def test_training_separates_two_topics(sg):
    g = torch.Generator().manual_seed(2)
    topic_a, topic_b = [f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]
    tokens = []
    for _ in range(400):   # sentences drawn from one topic at a time
        topic = topic_a if torch.rand((), generator=g) < 0.5 else topic_b
        tokens += [topic[int(i)] for i in torch.randint(0, 8, (6,), generator=g)]
    vocab = Vocab(tokens, 1)
    model = Word2Vec(vocab, Word2VecConfig(dim=16, window=3, epochs=5, sample=0, sg=sg, batch=64,
                                           lr=0.025 if sg else 0.05)).fit(vocab.encode(tokens))
    same = sum(w.startswith("a") for w, _ in nearest(model.vectors(), vocab.index, vocab.words, "a0", 5))
    assert same >= 4, nearest(model.vectors(), vocab.index, vocab.words, "a0", 5)


def test_bag_of_words_vectors_and_errors():
    docs = [["a", "b"], ["a"], ["c", "c"]]
    vec = bag_of_words_vectors(docs, {"a": 0, "b": 1, "c": 2})
    assert vec[0, 2] == 0 and vec[1, 1] == 0
    torch.testing.assert_close(vec[0, 0], torch.log(torch.tensor(1.5)))      # "a": tf 1 · log(3 / 2 docs)
    torch.testing.assert_close(vec[2, 2], 2 * torch.log(torch.tensor(3.0)))   # tf 2 · log(3 docs / 1)
    with pytest.raises(KeyError, match="not in the vocabulary"):
        nearest(vec, {"a": 0}, ["a"], "zzz")
    with pytest.raises(ValueError, match="min_count=9"):
        Vocab(["a", "b"], 9)
