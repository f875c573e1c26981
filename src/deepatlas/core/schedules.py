"""Learning-rate schedules: plain functions of the step, the formula beside each line.

`step` is the 0-based index of the update about to be taken (the model has had `step` updates).
Every schedule except inverse_sqrt starts with the same linear warmup

    lr_t = lr · (t + 1) / warmup            for t < warmup

so the first update uses lr/warmup and update `warmup - 1` the full lr. After warmup,
p = (t - warmup) / (steps - warmup) ∈ [0, 1] is the fraction of the decay done; past `steps`
the rate stays at its final value. wsd keeps the full rate until its cooldown (cfg.cooldown, the
last fraction of the steps).

    lr_at(cfg, step)   # cfg has .lr, .min_lr, .warmup, .steps, .schedule (e.g. a TrainConfig)
"""
from __future__ import annotations

import math
from typing import Any, Callable


def warmup_factor(step: int, warmup: int) -> float:
    """(t + 1) / warmup during warmup, 1 after it."""
    if step < warmup:
        return (step + 1) / warmup
    return 1.0


def _progress(step: int, warmup: int, steps: int) -> float:
    # p = (t - warmup) / (steps - warmup), clamped to [0, 1]
    return min(1.0, max(0.0, (step - warmup) / max(1, steps - warmup)))


def constant(step: int, lr: float, min_lr: float, warmup: int, steps: int) -> float:
    """lr_t = lr after warmup."""
    return lr * warmup_factor(step, warmup)


def cosine(step: int, lr: float, min_lr: float, warmup: int, steps: int) -> float:
    """Linear warmup, then cosine decay to min_lr (Loshchilov & Hutter 2017, SGDR eq. (5),
    one cycle without restarts)."""
    if step < warmup:
        return lr * warmup_factor(step, warmup)
    p = _progress(step, warmup, steps)
    # η_t = η_min + ½ (η_max − η_min) (1 + cos(π · T_cur / T_i))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * p))


def linear(step: int, lr: float, min_lr: float, warmup: int, steps: int) -> float:
    """Linear warmup, then a straight line from lr down to min_lr at `steps`."""
    if step < warmup:
        return lr * warmup_factor(step, warmup)
    p = _progress(step, warmup, steps)
    # lr_t = lr + (min_lr − lr) · p
    return lr + (min_lr - lr) * p


def wsd(step: int, lr: float, min_lr: float, warmup: int, steps: int, cooldown: float = 0.2) -> float:
    """Warmup-stable-decay (Hu et al. 2024, MiniCPM §4; the "trapezoidal" schedule of modded-nanoGPT):
    linear warmup, the full lr for most of training, then a straight line to min_lr over the last
    `cooldown` fraction of the steps. Unlike cosine, the stable phase does not depend on when
    training will end, and most of the loss drop comes in the short cooldown."""
    if step < warmup:
        return lr * warmup_factor(step, warmup)
    start = steps - max(1, round(cooldown * steps))           # first step of the cooldown
    if step < start:
        return lr
    # lr_t = lr + (min_lr − lr) · (t − start) / (steps − start)
    return lr + (min_lr - lr) * min(1.0, (step - start) / max(1, steps - start))


def inverse_sqrt(step: int, lr: float, min_lr: float, warmup: int, steps: int) -> float:
    """Vaswani et al. 2017, eq. (3): lrate = d^-0.5 · min(s^-0.5, s · warmup^-1.5), s = t + 1.

    The d^-0.5 factor only sets the height; the peak, at s = warmup, is d^-0.5 · warmup^-0.5.
    Scaling so that the peak is `lr`:  lrate = lr · min(sqrt(warmup / s), s / warmup)
    i.e. the same linear warmup as the other schedules, then decay ∝ 1/√s (min_lr is unused)."""
    w = max(1, warmup)
    s = step + 1
    return lr * min(math.sqrt(w / s), s / w)


SCHEDULES: dict[str, Callable[[int, float, float, int, int], float]] = {
    "constant": constant,
    "cosine": cosine,
    "linear": linear,
    "inverse_sqrt": inverse_sqrt,
    "wsd": wsd,
}


def lr_at(cfg: Any, step: int) -> float:
    """The learning rate of update `step` (0-based) for a config with lr, min_lr, warmup,
    steps and schedule fields (TrainConfig)."""
    try:
        schedule = SCHEDULES[cfg.schedule]
    except KeyError:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; valid: {', '.join(SCHEDULES)}") from None
    if schedule is wsd:
        return wsd(step, cfg.lr, cfg.min_lr, cfg.warmup, cfg.steps, getattr(cfg, "cooldown", 0.2))
    return schedule(step, cfg.lr, cfg.min_lr, cfg.warmup, cfg.steps)
