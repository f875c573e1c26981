"""Tokenizer speed: our byte-level BPE (pure Python) vs HF `tokenizers` (Rust), same merges.

Corpus: Jane Austen's six novels (~4 MB; the KJV Bible when janeaustenr is not unpacked).
Goals, stated as ratios peer_time / our_time (HF is compiled Rust, so < 1 is expected):
* encode 4 MB: ratio ≥ 0.1 against HF's `encode_batch` over the paragraphs (HF's normal use,
  multi-threaded), and ours must finish in < 30 s; both sides encode the same paragraphs,
  ours from a cold word cache every time, and the ids are checked equal.
* encode 4 MB as one string with `encode`: the same, one call each (HF's offsets bookkeeping
  makes this slow for HF; reported as measured).
* train on 4 MB to 8000 tokens: ratio ≥ 0.5 (both do the same merges; HF is parallel Rust).
"""
from __future__ import annotations

import functools
import time

from bench.common import median_time, result
from deepatlas.experiments.l1_tokenizers import load_corpus
from deepatlas.text.bpe import ByteLevelBPE
from deepatlas.text.reference import hf_byte_level_bpe, hf_from_vocab_merges

VOCAB_SIZE = 8000


@functools.lru_cache(maxsize=1)
def _setup():
    text, corpus = load_corpus("austen")
    ours = ByteLevelBPE.train(text[:2_000_000], VOCAB_SIZE)
    hf = hf_from_vocab_merges(ours.vocab, ours.merges)
    paragraphs = [p for p in text.split("\n\n") if p]
    return text, corpus, ours, hf, paragraphs


def encode_4mb_paragraphs() -> dict:
    text, corpus, ours, hf, paragraphs = _setup()

    def run_ours():
        ours.clear_cache()
        return [ours.encode(p) for p in paragraphs]

    def run_hf():
        return [e.ids for e in hf.encode_batch(paragraphs)]

    if run_ours() != run_hf():
        raise AssertionError("ours and HF give different ids on the corpus paragraphs")
    ours_s = median_time(run_ours, warmup=1, repeats=3)
    hf_s = median_time(run_hf, warmup=1, repeats=3)
    out = result(f"bpe_encode_{len(text) / 1e6:.1f}MB_{corpus}_paragraphs", "s", ours_s, hf_s,
                 "tokenizers encode_batch (Rust)", goal=0.1)
    out["met"] = out["met"] and ours_s < 30.0
    return out


def encode_4mb_one_string() -> dict:
    text, corpus, ours, hf, _ = _setup()
    start = time.perf_counter()
    ours.clear_cache()
    ids = ours.encode(text)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    hf_ids = hf.encode(text).ids
    hf_s = time.perf_counter() - start
    if ids != hf_ids:
        raise AssertionError("ours and HF give different ids on the whole corpus")
    return result(f"bpe_encode_{len(text) / 1e6:.1f}MB_{corpus}_one_string", "s", ours_s, hf_s,
                  "tokenizers encode (Rust)", goal=0.1)


def train_4mb() -> dict:
    text, corpus, *_ = _setup()
    ours_s = median_time(lambda: ByteLevelBPE.train(text, VOCAB_SIZE), warmup=0, repeats=1)
    hf_s = median_time(lambda: hf_byte_level_bpe([text], VOCAB_SIZE), warmup=0, repeats=1)
    return result(f"bpe_train_{len(text) / 1e6:.1f}MB_{corpus}_{VOCAB_SIZE}", "s", ours_s, hf_s,
                  "tokenizers BpeTrainer (Rust)", goal=0.5)


BENCHMARKS = [encode_4mb_paragraphs, encode_4mb_one_string, train_4mb]
