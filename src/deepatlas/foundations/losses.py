"""Loss functions in torch from their formulas (map place F2); all reduce by the mean.

Each is a negative log-likelihood (maximum likelihood estimation):
- MSE  ⇔ Gaussian with fixed variance,
- cross-entropy ⇔ categorical (softmax) likelihood,
- BCE  ⇔ Bernoulli (sigmoid) likelihood,
- Gaussian NLL with a predicted variance ⇔ heteroscedastic Gaussian (Nix & Weigend 1994).
Tested equal to torch.nn.functional in tests/foundations/test_losses.py.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from deepatlas.foundations.activations import log_softmax


def mse(pred: Tensor, target: Tensor) -> Tensor:
    # MSE = mean (ŷ − y)²
    return (pred - target).pow(2).mean()


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """logits (N, C), target (N,) class indices."""
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy wants logits (N, C) and target (N,), got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    # CE = −mean_n log softmax(z_n)_{y_n}, with the stable log-sum-exp inside log_softmax
    return -log_softmax(logits, dim=-1).gather(1, target.long().unsqueeze(1)).mean()


def bce_with_logits(logits: Tensor, target: Tensor) -> Tensor:
    """Binary CE from logits z, targets y ∈ [0, 1]."""
    # −[y log σ(z) + (1−y) log(1−σ(z))] = max(z, 0) − z·y + log(1 + e^{−|z|})   (no overflow for any z)
    # (max and |z| written with `where` so that at z = 0 the gradient is σ(0) − y, like torch's)
    pos = logits >= 0
    relu_z = torch.where(pos, logits, torch.zeros_like(logits))
    neg_abs_z = torch.where(pos, -logits, logits)
    return (relu_z - logits * target + torch.log1p(torch.exp(neg_abs_z))).mean()


def gaussian_nll(mean: Tensor, target: Tensor, var: Tensor, full: bool = False, eps: float = 1e-6) -> Tensor:
    """Gaussian NLL with predicted variance, like F.gaussian_nll_loss (variance clamped at eps)."""
    var = var.clone()
    with torch.no_grad():          # torch's convention: clamp the value, let the gradient pass unchanged
        var.clamp_(min=eps)
    # −log N(y; μ, σ²) = ½ (log σ² + (y − μ)² / σ²)  [+ ½ log 2π when full]
    loss = 0.5 * (torch.log(var) + (target - mean).pow(2) / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return loss.mean()


def gaussian_nll_logvar(mean: Tensor, log_var: Tensor, target: Tensor, full: bool = False) -> Tensor:
    """The same NLL parameterised by s = log σ² (what a network head outputs; no clamp needed)."""
    # ½ (s + (y − μ)² e^{−s})  [+ ½ log 2π]
    loss = 0.5 * (log_var + (target - mean).pow(2) * torch.exp(-log_var))
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return loss.mean()
