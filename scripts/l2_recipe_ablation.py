"""The ablation behind gpt-pretrain's default recipe (L2): why nanoGPT's CPU recipe learns what it
does here, and what a higher rate buys. One run = one variant, one seed; it prints one JSON line.

    python scripts/l2_recipe_ablation.py base 0          # nanoGPT's recipe, seed 0
    for v in base nanogpt lr2 lr3; do for s in 0 1 2; do
        OMP_NUM_THREADS=1 python scripts/l2_recipe_ablation.py $v $s >> ablation.jsonl; done; done

Every variant is gpt-pretrain's full setting (Austen characters, 4 layers × 128, context 64,
batch 12, 2000 steps, AdamW β₂ 0.99, weight decay 0.1 on matrices, warmup 100, cosine to lr/10)
with the same model init, data order and eval batches per seed as `deepatlas run gpt-pretrain`.
val20 is the experiment's own estimate (20 fixed batches, nanoGPT's eval_iters); val500 the same
model on 500 other batches, an estimate whose noise is ~5× smaller.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import torch

from deepatlas.core.train import train
from deepatlas.data.austen import austen_corpus
from deepatlas.data.lm import LMDataset
from deepatlas.experiments.l2_gpt import FINAL_EVAL_SEED, Config
from deepatlas.models.gpt import GPT, GPTConfig, lm_loss
from deepatlas.text.char import CharTokenizer

# variant -> (GPTConfig changes, TrainConfig changes) to gpt-pretrain's full setting
VARIANTS = {
    "base": ({}, {"lr": 1e-3, "min_lr": 1e-4}),                                          # nanoGPT's recipe
    "nanogpt": ({"bias": False, "activation": "gelu"}, {"lr": 1e-3, "min_lr": 1e-4}),    # and its model
    "lr2": ({}, {"lr": 2e-3, "min_lr": 2e-4}),
    "lr3": ({}, {"lr": 3e-3, "min_lr": 3e-4}),                                           # gpt-pretrain's default
}


def run(variant: str, seed: int) -> dict:
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    model_changes, train_changes = VARIANTS[variant]
    cfg = Config()                                   # gpt-pretrain's full setting
    text = austen_corpus()
    tok = CharTokenizer.from_text(text)
    data = LMDataset(torch.tensor(tok.encode(text)), val_fraction=0.1)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=len(tok), block_size=cfg.block_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                          n_embd=cfg.n_embd, dropout=cfg.dropout, **model_changes))
    # no evaluation or checkpoints during training: neither touches the training's random streams
    train_cfg = replace(cfg.train, seed=seed, progress=False, eval_every=0, checkpoint_every=0, log_every=500,
                        **train_changes)
    B, T = cfg.batch_size, cfg.block_size
    start = time.time()
    train(model, lm_loss, lambda step, micro: data.get_batch("train", step, micro, B, T, seed), train_cfg)
    seconds = time.time() - start
    model.eval()
    with torch.no_grad():
        def val(n: int, batch_seed: int) -> float:
            return float(torch.stack([lm_loss(model, data.get_batch("val", i, 0, B, T, seed=batch_seed))
                                      for i in range(n)]).mean())
        v20, v500 = val(cfg.eval_batches, 10_000 + seed), val(cfg.final_eval_batches, FINAL_EVAL_SEED)
    return {"variant": variant, "seed": seed, "val20": round(v20, 4), "val500": round(v500, 4),
            "train_seconds": round(seconds, 1)}


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        raise SystemExit(f"usage: {sys.argv[0]} VARIANT SEED   (VARIANT one of {', '.join(VARIANTS)})")
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]))), flush=True)
