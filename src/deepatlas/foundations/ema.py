"""Exponential moving average of weights (map place F7; Polyak & Juditsky 1992 averaging, the EMA form
used by Adam's authors' "temporal averaging", Kingma & Ba 2015 §7.2, and by diffusion/GPT training).

    θ̄_0 = θ_0 (the first update copies),   θ̄_t = α θ̄_{t−1} + (1 − α) θ_t

over every parameter and floating-point buffer (BatchNorm's running statistics too; integer counters
are copied), which is
torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(α), use_buffers=True)
step by step (tests/foundations/test_ema.py). The average lives in a frozen copy of the model that is
evaluated in place of the trained one; an EMA over the last ~1/(1 − α) steps averages out the noise of
SGD around a minimum.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """ema = EMA(model, decay); after each optimiser step ema.update(model); evaluate ema.module."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay={decay} must be in [0, 1)")
        self.decay = decay
        self.module = copy.deepcopy(model)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.n_averaged = 0

    def _tensors(self, model: nn.Module) -> list[torch.Tensor]:
        return list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for avg, cur in zip(self._tensors(self.module), self._tensors(model)):
            if self.n_averaged == 0:
                avg.copy_(cur)                                   # θ̄_0 = θ_0
            else:
                avg.lerp_(cur, 1.0 - self.decay)                 # θ̄ ← α θ̄ + (1 − α) θ
        for avg, cur in zip(self.module.buffers(), model.buffers()):
            if not cur.is_floating_point():
                avg.copy_(cur)                                   # counters are copied, not averaged
        self.n_averaged += 1
