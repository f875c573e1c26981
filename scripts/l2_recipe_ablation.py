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

import torch

from deepatlas.core.train import TrainConfig, train
from deepatlas.data.austen import austen_corpus
from deepatlas.data.lm import LMDataset
from deepatlas.models.gpt import GPT, GPTConfig, lm_loss
from deepatlas.text.char import CharTokenizer

# variant -> (GPTConfig changes, TrainConfig changes)
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
    text = austen_corpus()
    tok = CharTokenizer.from_text(text)
    data = LMDataset(torch.tensor(tok.encode(text)), val_fraction=0.1)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
                          **model_changes))
    cfg = TrainConfig(**{**dict(steps=2000, warmup=100, schedule="cosine", beta2=0.99, weight_decay=0.1,
                                log_every=500, progress=False, seed=seed), **train_changes})
    start = time.time()
    train(model, lm_loss, lambda step, micro: data.get_batch("train", step, micro, 12, 64, seed), cfg)
    seconds = time.time() - start
    model.eval()
    with torch.no_grad():
        def val(n: int, batch_seed: int) -> float:
            return float(torch.stack([lm_loss(model, data.get_batch("val", i, 0, 12, 64, seed=batch_seed))
                                      for i in range(n)]).mean())
        v20, v500 = val(20, 10_000 + seed), val(500, 777)
    return {"variant": variant, "seed": seed, "val20": round(v20, 4), "val500": round(v500, 4),
            "train_seconds": round(seconds, 1)}


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        raise SystemExit(f"usage: {sys.argv[0]} VARIANT SEED   (VARIANT one of {', '.join(VARIANTS)})")
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]))), flush=True)
