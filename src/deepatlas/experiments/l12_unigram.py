"""L12: the Unigram LM tokenizer (Kudo 2018) — ours against sentencepiece on the same text.

Two checks and one comparison: (1) loaded with a model sentencepiece trained, our Viterbi
segmentation must give sentencepiece's ids on every held-out line (Austen and KJV verses);
(2) our subword sampler and sentencepiece's must draw segmentations from the same P(x)^α;
(3) our EM-with-pruning trainer and sentencepiece's trainer, on the same text and vocabulary
size: vocabulary overlap and compression (characters per token on held-out text).
"""
from __future__ import annotations

import io
import re
import time
from collections import Counter
from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.text.unigram import Unigram, normalize


@dataclass
class Config:
    train_chars: int = 400_000
    held_lines: int = 1000
    vocab_size: int = 1000
    verses: int = 5000
    alpha: float = 0.5
    samples: int = 3000
    min_overlap: float = 0.6            # held: overlap ≥ this, compression within 10%, Viterbi = sp
    seed: int = 0


def _lines(cfg: Config) -> tuple[list[str], list[str]]:
    from deepatlas.data.austen import austen_corpus
    from deepatlas.data.bible import bible_verses

    text = austen_corpus()
    paras = [p for p in (re.sub(r"\s+", " ", q).strip() for q in text.split("\n\n")) if p]
    verses = [t for _, t in bible_verses()]
    train, n = [], 0
    for p in paras:
        if n >= cfg.train_chars * 0.8:
            break
        train.append(p)
        n += len(p)
    k = 0
    while n < cfg.train_chars and k < len(verses) // 2:
        train.append(verses[k])
        n += len(verses[k])
        k += 1
    held = paras[-cfg.held_lines // 2:] + verses[-cfg.held_lines // 2:]
    return train, held


def sp_train(lines: list[str], vocab: int):
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab,
                                   model_type="unigram", character_coverage=1.0,
                                   normalization_rule_name="identity", minloglevel=2, num_threads=1)
    return spm.SentencePieceProcessor(model_proto=buf.getvalue())


@experiment("L12", "unigram-tokenizer",
            claim="our Unigram LM tokenizer reproduces sentencepiece: Viterbi gives its ids on every "
                  "held-out line, and our EM-with-pruning trainer shares most of its vocabulary "
                  "(≥ 60%) at a compression within 10% of sentencepiece's trainer",
            config=Config, one_thread=True,
            quick={"train_chars": 60_000, "held_lines": 200, "vocab_size": 400, "samples": 1000},
            headline={"viterbi_agreement": ("Viterbi = sentencepiece", "{:.1%} of lines"),
                      "vocab_overlap": ("vocabulary overlap", "{:.1%}"),
                      "chars_per_token_ours": ("chars/token, ours", "{:.3f}"),
                      "chars_per_token_sp": ("chars/token, sentencepiece", "{:.3f}")})
def unigram_tokenizer(cfg: Config, run: Run) -> Verdict:
    train, held = _lines(cfg)
    start = time.time()
    sp = sp_train(train, cfg.vocab_size)
    sp_seconds = time.time() - start
    loaded = Unigram.from_sentencepiece(sp)
    agree = sum(loaded.encode(t) == sp.encode(t) for t in held) / len(held)

    word = "therefore"
    g = torch.Generator().manual_seed(cfg.seed)
    ours_s = Counter(tuple(loaded.sample(normalize(word), cfg.alpha, g)) for _ in range(cfg.samples))
    sp_s = Counter(tuple(sp.encode(word, enable_sampling=True, alpha=cfg.alpha, nbest_size=-1))
                   for _ in range(cfg.samples))
    tv = 0.5 * sum(abs(ours_s[k] - sp_s[k]) / cfg.samples for k in set(ours_s) | set(sp_s))

    start = time.time()
    ours = Unigram.train(train, cfg.vocab_size)
    our_seconds = time.time() - start
    mine = set(ours.pieces[3:])
    theirs = {sp.id_to_piece(i) for i in range(3, sp.get_piece_size())}
    overlap = len(mine & theirs) / len(theirs)
    chars = sum(len(t) for t in held)
    cpt_ours = chars / sum(len(ours.encode(t)) for t in held)
    cpt_sp = chars / sum(len(sp.encode(t)) for t in held)
    run.print(f"Viterbi agreement {agree:.1%}; sampling TV {tv:.3f}; overlap {overlap:.1%}; "
              f"chars/token ours {cpt_ours:.3f} sp {cpt_sp:.3f}; train {our_seconds:.0f}s vs {sp_seconds:.1f}s")
    only_ours = sorted(mine - theirs, key=lambda p: -ours.scores[ours.index[p]])[:15]
    only_sp = sorted(theirs - mine, key=lambda p: -sp.get_score(sp.piece_to_id(p)))[:15]
    run.print(f"most probable pieces only ours: {only_ours}\nonly sentencepiece's: {only_sp}")
    held_ok = agree == 1.0 and overlap >= cfg.min_overlap and abs(cpt_ours / cpt_sp - 1) <= 0.10 and tv < 0.1
    metrics = {"viterbi_agreement": agree, "sampling_tv_vs_sp": round(tv, 4), "vocab_overlap": round(overlap, 4),
               "chars_per_token_ours": round(cpt_ours, 4), "chars_per_token_sp": round(cpt_sp, 4),
               "train_seconds_ours": round(our_seconds, 1), "train_seconds_sp": round(sp_seconds, 2),
               "train_lines": len(train), "held_lines": len(held), "vocab_size": cfg.vocab_size}
    return Verdict(held=held_ok, metrics=metrics,
                   notes=f"Viterbi = sentencepiece on {agree:.1%} of {len(held)} lines; overlap {overlap:.1%}; "
                         f"chars/token {cpt_ours:.3f} (ours) vs {cpt_sp:.3f} (sentencepiece); sampling TV {tv:.3f}")
