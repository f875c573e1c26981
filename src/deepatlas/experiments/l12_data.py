"""L12: pretraining-data curation — a dirty stream vs the same stream cleaned, at equal tokens.

The stream: Austen paragraphs (the first 90% of the chosen text) with what a web crawl adds,
generated from a seed — exact copies (boilerplate repeated many times), near duplicates (a few
words changed), junk (symbol spam, keyboard noise, repeated lines, word salad) and PII (e-mail
addresses, phone numbers, IPs inside real paragraphs). The cleaning pipeline
(deepatlas.data.curation): PII scrubbing → exact dedup → MinHash/LSH near dedup → quality
rules → a character-trigram perplexity filter fitted on a small trusted sample. Two identical
character-level GPTs train for the same number of tokens, one on each stream; both are scored
on held-out clean Austen (the last 10%). Claim (Lee et al. 2022, Penedo et al. 2023, the Gopher
rules): the cleaned stream gives a lower validation loss. The pipeline's precision and recall
against the injected labels are reported beside it.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.data.curation import (CharTrigramLM, exact_dedup, near_dedup, quality_failures,
                                     scrub_pii)
from deepatlas.data.lm import LMDataset
from deepatlas.models.gpt import GPT, GPTConfig, lm_loss
from deepatlas.text.char import CharTokenizer

BOILERPLATE = ["Click here to subscribe to our newsletter and never miss an update!",
               "All rights reserved. Terms of use | Privacy policy | Contact us | Cookie settings",
               "Share this article on Facebook Twitter Pinterest Email Print"]


@dataclass
class Config:
    corpus_chars: int = 800_000
    exact_copies: float = 0.08      # fraction of paragraphs repeated ...
    copies_each: int = 6            # ... this many extra times
    near_dups: float = 0.15         # fraction given one edited copy
    junk: float = 0.35              # junk documents per clean paragraph
    pii: float = 0.05               # paragraphs that get an e-mail / phone / IP inserted
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 96
    block_size: int = 96
    batch_size: int = 16
    eval_batches: int = 30
    min_gain_nats: float = 0.01     # held: clean val loss at least this far below dirty
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=800, lr=2e-3, min_lr=2e-4, warmup=50, schedule="cosine", log_every=100, progress=False))


def _junk(rng: random.Random, words: list[str]) -> str:
    kind = rng.randrange(4)
    if kind == 0:       # symbol spam
        return " ".join("".join(rng.choice("#$%&*@!~^") for _ in range(rng.randint(2, 8)))
                        for _ in range(rng.randint(20, 80)))
    if kind == 1:       # keyboard noise
        return "".join(rng.choice("qwertyuiopasdfghjklzxcvbnm   ") for _ in range(rng.randint(150, 600)))
    if kind == 2:       # one boilerplate line repeated
        return "\n".join([rng.choice(BOILERPLATE)] * rng.randint(4, 12))
    return " ".join(rng.choice(words) for _ in range(rng.randint(30, 120)))  # word salad


def _pii(rng: random.Random) -> str:
    d = lambda k: "".join(str(rng.randrange(10)) for _ in range(k))  # noqa: E731
    return rng.choice([f"write to {rng.choice(['anne', 'fwentworth', 'emma.w'])}@{rng.choice(['example.com', 'bath.org'])}",
                       f"call +44 {d(2)} {d(4)} {d(4)}", f"ring ({d(3)}) {d(3)}-{d(4)}",
                       f"see {rng.randrange(1, 255)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"])


def build_dirty(paras: list[str], cfg: Config) -> tuple[list[str], list[str], list[int]]:
    """-> documents, their labels (clean, pii, copy, near, junk) and source paragraph (−1: junk),
    shuffled deterministically."""
    rng = random.Random(cfg.seed)
    words = " ".join(paras).split()
    docs = []
    for i, p in enumerate(paras):
        if rng.random() < cfg.pii:
            cut = p.split(" ")
            k = rng.randrange(len(cut) + 1)
            docs.append((" ".join(cut[:k] + [_pii(rng)] + cut[k:]), "pii", i))
        else:
            docs.append((p, "clean", i))
    for i in rng.sample(range(len(paras)), int(cfg.exact_copies * len(paras))):
        docs += [(paras[i] if c % 2 else paras[i].upper(), "copy", i) for c in range(cfg.copies_each)]
    for i in rng.sample(range(len(paras)), int(cfg.near_dups * len(paras))):
        ws = paras[i].split()
        docs.append((" ".join(rng.choice(words) if rng.random() < 0.03 else w for w in ws), "near", i))
    docs += [(_junk(rng, words), "junk", -1) for _ in range(int(cfg.junk * len(paras)))]
    rng.shuffle(docs)
    return [d[0] for d in docs], [d[1] for d in docs], [d[2] for d in docs]


def clean(docs: list[str], trusted: list[str]) -> tuple[list[str], dict, list[int]]:
    """The pipeline -> kept documents, counts per stage, kept indices."""
    scrubbed, pii_found = [], 0
    for d in docs:
        text, counts = scrub_pii(d)
        scrubbed.append(text)
        pii_found += sum(counts.values())
    idx = exact_dedup(scrubbed)
    n_exact = len(docs) - len(idx)
    kept_near, _ = near_dedup([scrubbed[i] for i in idx], threshold=0.7, shingle=3)
    idx2 = [idx[k] for k in kept_near]
    n_near = len(idx) - len(idx2)
    idx3 = [i for i in idx2 if not quality_failures(scrubbed[i])]
    lm = CharTrigramLM(trusted)
    ref = np.array([lm.perplexity(t) for t in trusted])
    limit = float(np.quantile(ref, 0.99)) * 1.5
    idx4 = [i for i in idx3 if lm.perplexity(scrubbed[i]) <= limit]
    stages = {"pii_replaced": pii_found, "exact_dups_removed": n_exact, "near_dups_removed": n_near,
              "quality_removed": len(idx2) - len(idx3), "perplexity_removed": len(idx3) - len(idx4),
              "perplexity_limit": round(limit, 2)}
    return [scrubbed[i] for i in idx4], stages, idx4


def _paragraphs(text: str) -> list[str]:
    return [p for p in (re.sub(r"\s+", " ", q).strip() for q in text.split("\n\n")) if len(p.split()) >= 5]


@experiment("L12", "data-curation",
            claim="deduplicating and filtering a pretraining stream (exact + MinHash/LSH dedup, "
                  "quality rules, perplexity filter, PII scrubbing) lowers the held-out loss of a "
                  "GPT trained on the same number of tokens",
            config=Config, one_thread=True,
            quick={"corpus_chars": 150_000, "n_embd": 64, "block_size": 64, "batch_size": 12,
                   "eval_batches": 8, "train.steps": 150, "train.log_every": 50},
            headline={"val_loss_clean": ("val loss, cleaned stream", "{:.3f} nats/char"),
                      "val_loss_dirty": ("val loss, raw stream", "{:.3f} nats/char"),
                      "gain_nats": ("cleaning gains", "{:.3f} nats/char"),
                      "junk_recall": ("junk removed", "{:.0%}")})
def data_curation(cfg: Config, run: Run) -> Verdict:
    from deepatlas.data.austen import austen_corpus

    text = austen_corpus()[:cfg.corpus_chars]
    split = int(len(text) * 0.9)
    paras, val_text = _paragraphs(text[:split]), " ".join(_paragraphs(text[split:]))
    docs, labels, sources = build_dirty(paras, cfg)
    cleaned, stages, kept = clean(docs, paras[:150])
    kept_labels = [labels[i] for i in kept]
    total = {lab: labels.count(lab) for lab in set(labels)}
    left = {lab: kept_labels.count(lab) for lab in set(labels)}
    junk_recall = 1 - left["junk"] / total["junk"]
    # per source paragraph: how many of its versions (original, copies, near copy) survive
    versions = np.bincount([sources[i] for i in kept if sources[i] >= 0], minlength=len(paras))
    clean_lost = float((versions == 0).mean())        # paragraphs with no version left
    extra_versions = int(np.clip(versions - 1, 0, None).sum())   # duplicates that survived
    dup_docs = total["copy"] + total["near"]
    dup_recall = 1 - extra_versions / dup_docs
    run.print(f"{len(docs)} documents {total} -> {len(cleaned)} kept {left}; stages {stages}")

    dirty_stream, clean_stream = "\n\n".join(docs), "\n\n".join(cleaned)
    tok = CharTokenizer.from_text(dirty_stream + clean_stream + val_text)
    val_ids = torch.tensor(tok.encode(val_text))
    results = {}
    for name, stream in (("dirty", dirty_stream), ("clean", clean_stream)):
        ids = torch.tensor(tok.encode(stream))
        data = LMDataset(torch.cat([ids, val_ids]), val_fraction=len(val_ids) / (len(ids) + len(val_ids)))
        torch.manual_seed(cfg.seed)
        model = GPT(GPTConfig(vocab_size=len(tok), block_size=cfg.block_size, n_layer=cfg.n_layer,
                              n_head=cfg.n_head, n_embd=cfg.n_embd)).to(run.device)
        batches = lambda step, micro, d=data: tuple(  # noqa: E731
            t.to(run.device) for t in d.get_batch("train", step, micro, cfg.batch_size, cfg.block_size, cfg.seed))
        res = train(model, lm_loss, batches, cfg.train)
        model.eval()
        with torch.no_grad():
            val = float(torch.stack([lm_loss(model, tuple(t.to(run.device) for t in data.get_batch(
                "val", i, 0, cfg.batch_size, cfg.block_size, seed=10_000))) for i in range(cfg.eval_batches)]).mean())
        results[name] = {"val": val, "train_chars": len(stream), "final_train_loss": res.losses[-1]}
        run.log(stream=name, val_loss=val, train_chars=len(stream))
        run.print(f"{name}: {len(stream):,} chars, val loss {val:.4f} nats/char")
    gain = results["dirty"]["val"] - results["clean"]["val"]
    tokens = cfg.train.steps * cfg.batch_size * cfg.block_size
    metrics = {"val_loss_dirty": round(results["dirty"]["val"], 4), "val_loss_clean": round(results["clean"]["val"], 4),
               "gain_nats": round(gain, 4), "train_tokens_each": tokens,
               "dirty_chars": results["dirty"]["train_chars"], "clean_chars": results["clean"]["train_chars"],
               "docs": len(docs), "docs_kept": len(cleaned), "junk_recall": round(junk_recall, 4),
               "duplicate_recall": round(dup_recall, 4), "duplicates_injected": dup_docs,
               "duplicates_kept": extra_versions, "paragraphs_lost": round(clean_lost, 4),
               **stages, "pii_inserted": total.get("pii", 0)}
    held = gain >= cfg.min_gain_nats
    return Verdict(held=held, metrics=metrics,
                   notes=f"equal tokens ({tokens:,}): cleaned {results['clean']['val']:.3f} vs raw "
                         f"{results['dirty']['val']:.3f} nats/char on held-out Austen (gain {gain:.3f}); "
                         f"junk recall {junk_recall:.0%}, duplicate recall {dup_recall:.0%}, "
                         f"{clean_lost:.1%} of real paragraphs lost")
