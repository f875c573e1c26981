"""Overhead of deepatlas.core.train.train over the bare PyTorch loop it wraps.

Same model (4-layer MLP, 512 wide), same random data (batch 256), AdamW with decay on matrices
only, warmup + cosine schedule, gradient clipping at 1.0, same seed, progress bar off. The bare
loop is what one would write by hand; train() adds the schedule lookup, the NaN guard's one
.item() per step (the bare loop does the same .item() to record its loss), logging checks and
the progress bar. Goal: at most 5% slower, ratio = bare time / our time ≥ 0.95.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from bench.common import interleaved_median_times, result
from deepatlas.core.train import TrainConfig, train

def _setup(width: int, depth: int, batch: int, steps: int):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.GELU()]
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(batch, width, generator=g), torch.randint(0, 10, (batch,), generator=g))
               for _ in range(steps)]
    cfg = TrainConfig(steps=steps, lr=1e-3, min_lr=1e-4, warmup=2, schedule="cosine", optimizer="adamw",
                      weight_decay=0.1, clip=1.0, progress=False, log_every=10**9)
    return model, init, batches, cfg


def _loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _compare(name: str, width: int, depth: int, batch: int, steps: int, repeats: int, goal: float) -> dict:
    model, init, batches, cfg = _setup(width, depth, batch, steps)

    def ours():
        model.load_state_dict(init)
        return train(model, _loss, lambda step, micro: batches[step], cfg).losses

    def bare():
        model.load_state_dict(init)
        torch.manual_seed(cfg.seed)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        other = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": other, "weight_decay": 0.0}], lr=cfg.lr)
        model.train()
        losses = []
        for step in range(cfg.steps):
            if step < cfg.warmup:
                lr = cfg.lr * (step + 1) / cfg.warmup
            else:
                p = (step - cfg.warmup) / (cfg.steps - cfg.warmup)
                lr = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * p))
            for group in opt.param_groups:
                group["lr"] = lr
            loss = _loss(model, batches[step])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        return losses

    same = ours() == bare()  # the two loops must compute the same thing, or the timing means nothing
    if not same:
        raise AssertionError("train() and the bare loop gave different losses")
    t = interleaved_median_times({"ours": ours, "bare": bare}, warmup=1, repeats=repeats)
    return result(name, "s/step", t["ours"] / steps, t["bare"] / steps, "bare PyTorch loop", goal=goal)


def train_step_overhead() -> dict:
    """The benchmark the goal is about: a step of real work (4×512 MLP, batch 256)."""
    return _compare("train_step_overhead", width=512, depth=4, batch=256, steps=10, repeats=9, goal=0.95)


def train_loop_fixed_cost() -> dict:
    """A step that does almost nothing (16-wide MLP, batch 8): shows the loop's own fixed
    cost per step (schedule, guard, bookkeeping), which real steps hide."""
    return _compare("train_loop_fixed_cost", width=16, depth=2, batch=8, steps=200, repeats=9, goal=0.9)


BENCHMARKS = [train_step_overhead, train_loop_fixed_cost]
