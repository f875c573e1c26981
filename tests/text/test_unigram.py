"""Unigram LM tokenizer: Viterbi = sentencepiece's encoding of its own model; sampling follows
P(x)^α; training is close to sentencepiece's trainer (vocabulary overlap, chars/token)."""
import io
import itertools
import math
import re
from collections import Counter

import pytest
import torch

from deepatlas.text.unigram import Unigram, normalize


@pytest.fixture(scope="module")
def corpus():
    from deepatlas.data.austen import austen_corpus
    from deepatlas.data.bible import bible_verses

    austen = [re.sub(r"\s+", " ", p).strip() for p in austen_corpus()[:150_000].split("\n\n")]
    verses = [text for _, text in bible_verses()[:1500]]
    return [p for p in austen if p] + verses


def _sp_train(lines, vocab):
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab,
                                   model_type="unigram", character_coverage=1.0,
                                   normalization_rule_name="identity", minloglevel=2, num_threads=1)
    return spm.SentencePieceProcessor(model_proto=buf.getvalue())


@pytest.fixture(scope="module")
def sp(corpus):
    return _sp_train(corpus, 800)


def test_normalize_like_sentencepiece_identity():
    assert normalize("  Emma   Woodhouse, handsome ") == "▁Emma▁Woodhouse,▁handsome"
    assert normalize("   ") == ""


def test_viterbi_equals_sentencepiece(corpus, sp):
    ours = Unigram.from_sentencepiece(sp)
    varied = corpus[::7][:200] + [
        "In 1811, 42 guineas -- or £2,000 a year!", "ALL CAPITALS AND    SPACES",
        "unknown: ж, Ω and ☃☃ in a row", "x", "", "   leading and trailing   ",
        "Mr.Darcy;Elizabeth:Bingley?!", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]
    for text in varied:
        assert ours.encode(text) == sp.encode(text), text
    assert ours.decode(ours.encode(corpus[3])) == corpus[3]


def _segmentations(s, model):
    """Every segmentation of s into known pieces, with its log P."""
    out = []
    for cuts in itertools.product([0, 1], repeat=len(s) - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [len(s)]
        pieces = [s[a:b] for a, b in zip(bounds, bounds[1:])]
        if all(p in model.index for p in pieces):
            out.append((tuple(model.index[p] for p in pieces), sum(model.scores[model.index[p]] for p in pieces)))
    return out


def test_sampling_follows_p_alpha_and_matches_sentencepiece(sp):
    ours = Unigram.from_sentencepiece(sp)
    s, alpha = normalize("therefore"), 0.5
    segs = _segmentations(s, ours)
    z = math.log(sum(math.exp(alpha * lp) for _, lp in segs))
    exact = {ids: math.exp(alpha * lp - z) for ids, lp in segs}
    assert ours.logprob(s) == pytest.approx(math.log(sum(math.exp(lp) for _, lp in segs)), rel=1e-9)
    g = torch.Generator().manual_seed(0)
    n = 3000
    ours_freq = Counter(tuple(ours.sample(s, alpha, g)) for _ in range(n))
    tv = 0.5 * sum(abs(ours_freq[k] / n - p) for k, p in exact.items())
    assert tv < 0.05, tv
    theirs = Counter(tuple(sp.encode("therefore", enable_sampling=True, alpha=alpha, nbest_size=-1))
                     for _ in range(n))
    tv_sp = 0.5 * sum(abs(theirs[k] / n - p) for k, p in exact.items())
    assert tv_sp < 0.05, tv_sp                     # sentencepiece samples the same distribution


def test_training_close_to_sentencepiece(corpus, sp):
    train = corpus[:400]
    ref = _sp_train(train, 500)
    ours = Unigram.train(train, 500)
    assert len(ours) == 500
    mine = set(ours.pieces[3:])
    theirs = {ref.id_to_piece(i) for i in range(3, ref.get_piece_size())}
    overlap = len(mine & theirs) / len(theirs)
    held = corpus[400:600]
    chars = sum(len(t) for t in held)
    cpt_ours = chars / sum(len(ours.encode(t)) for t in held)
    cpt_sp = chars / sum(len(ref.encode(t)) for t in held)
    assert overlap > 0.6, overlap
    assert cpt_ours > 0.9 * cpt_sp, (cpt_ours, cpt_sp)
    assert all(ours.decode(ours.encode(t)) == " ".join(t.split()) for t in held[:20])
