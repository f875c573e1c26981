"""L4 / A4 speed: MiniLM sentence embeddings against sentence-transformers; word2vec against gensim.

* minilm_embeddings_per_s: all-MiniLM-L6-v2 (the real weights), 256 Austen paragraphs of mixed
  length (a few words to the 256-token limit), batch 32, mean-pooled and normalised: deepatlas's
  BERT + WordPiece (models/sentence_encoder.py) vs sentence-transformers' SentenceTransformer on
  the same folder, embeddings checked equal first. Goal ≥ 1.2× sentences/s.
* word2vec_vs_gensim: skip-gram with negative sampling, one epoch over the first 300 000 words of
  Austen, dim 100, window 5, 5 negatives, one thread each: ours (models/word2vec.py, batched
  torch updates) vs gensim's optimised C (word2vec_inner). Reported; gensim is expected faster:
  its C loop updates one (centre, context) pair at a time in cache with no Python per pair, while
  ours pays for index gathers and scatters of each 512-word batch. Goal 0.2 ("within 5×").
"""
from __future__ import annotations

import functools

import numpy as np

from bench.common import interleaved_median_times, result


@functools.lru_cache(maxsize=1)
def _paragraphs(n: int = 256) -> list[str]:
    from deepatlas.data.austen import austen_corpus

    paras = [p.strip().replace("\n", " ") for p in austen_corpus().split("\n\n") if len(p.split()) >= 3]
    step = max(1, len(paras) // n)
    return paras[::step][:n]


@functools.lru_cache(maxsize=1)
def _minilm():
    """(ours, sentence-transformers) on the same all-MiniLM-L6-v2 folder, loaded once for the three
    MiniLM entries, with the fp32 embeddings checked equal and the bf16 ones checked close first."""
    from sentence_transformers import SentenceTransformer

    from deepatlas.models.sentence_encoder import load_minilm, minilm_dir

    texts = _paragraphs()
    ours, st = load_minilm(), SentenceTransformer(str(minilm_dir()), device="cpu")
    a = ours.encode(texts, batch_size=32)
    b = st.encode(texts, batch_size=32, normalize_embeddings=True)
    if not np.allclose(a.numpy(), b, atol=1e-4):
        raise AssertionError(f"embeddings differ: max |Δ| = {np.abs(a.numpy() - b).max():.2e}")
    cos = (a * ours.encode(texts, batch_size=32, bf16=True)).sum(-1).min().item()
    if cos < 0.9999:
        raise AssertionError(f"bf16 embeddings drift: min cosine to fp32 {cos:.6f} < 0.9999")
    return ours, st


def minilm_embeddings_per_s() -> dict:
    ours, st = _minilm()
    texts = _paragraphs()
    t = interleaved_median_times({"ours": lambda: ours.encode(texts, batch_size=32),
                                  "st": lambda: st.encode(texts, batch_size=32, normalize_embeddings=True)},
                                 warmup=0, repeats=3)
    return result("minilm_embeddings_per_s_batch32", "sentences/s", len(texts) / t["ours"], len(texts) / t["st"],
                  "sentence-transformers (same weights)", 1.2, higher_is_better=True)


def _minilm_bf16(peer_bf16: bool) -> dict:
    import torch

    ours, st = _minilm()
    texts = _paragraphs()

    def peer():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=peer_bf16):
            st.encode(texts, batch_size=32, normalize_embeddings=True)

    t = interleaved_median_times({"ours": lambda: ours.encode(texts, batch_size=32, bf16=True), "st": peer},
                                 warmup=1, repeats=3)
    return result("minilm_embeddings_per_s_bf16" + ("_both" if peer_bf16 else "_vs_st_fp32"), "sentences/s",
                  len(texts) / t["ours"], len(texts) / t["st"],
                  f"sentence-transformers ({'bf16 autocast' if peer_bf16 else 'fp32'}, same weights)",
                  1.2 if not peer_bf16 else 1.0, higher_is_better=True)


def minilm_embeddings_per_s_bf16() -> dict:
    return _minilm_bf16(peer_bf16=False)


def minilm_embeddings_per_s_bf16_both() -> dict:
    return _minilm_bf16(peer_bf16=True)


def word2vec_vs_gensim(n_words: int = 300_000) -> dict:
    import torch
    from gensim.models import Word2Vec as GensimWord2Vec

    from deepatlas.data.austen import austen_corpus
    from deepatlas.models.word2vec import Vocab, Word2Vec, Word2VecConfig, words

    tokens = words(austen_corpus())[:n_words]
    cfg = Word2VecConfig(epochs=1)
    torch.set_num_threads(1)
    vocab = Vocab(tokens, cfg.min_count)
    ids = vocab.encode(tokens)

    def ours():
        Word2Vec(vocab, cfg).fit(ids)

    def gensim():
        GensimWord2Vec([tokens[i:i + 10_000] for i in range(0, len(tokens), 10_000)], vector_size=cfg.dim,
                       window=cfg.window, negative=cfg.negatives, min_count=cfg.min_count, sample=cfg.sample,
                       epochs=1, sg=1, alpha=cfg.lr, min_alpha=cfg.min_lr, hs=0, workers=1, seed=0)

    t = interleaved_median_times({"ours": ours, "gensim": gensim}, warmup=0, repeats=3)
    return result("word2vec_sg_epoch_300k_words", "s", t["ours"], t["gensim"], "gensim Word2Vec (C, 1 worker)", 0.2)


BENCHMARKS = [minilm_embeddings_per_s, minilm_embeddings_per_s_bf16, minilm_embeddings_per_s_bf16_both,
              word2vec_vs_gensim]
