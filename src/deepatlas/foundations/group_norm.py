"""GroupNorm and InstanceNorm (map place F7), beside F4's Batch/Layer/RMS norms in deepatlas.nn.norms.

GroupNorm (Wu & He 2018, eq. 1 with the group set of eq. 7): split the C channels of each example into
G groups and normalise each group over its channels and all spatial positions,
    x̂ = (x − μ_g) / sqrt(σ²_g + ε),  y = γ_c x̂ + β_c   (μ_g, biased σ²_g per example and group).
G = 1 normalises the whole example (LayerNorm over (C, *S)); G = C is InstanceNorm.

InstanceNorm (Ulyanov, Vedaldi & Lempitsky 2016, eq. 2): per example and channel over the spatial
positions — no batch statistics, so it is the same in training and evaluation unless running
estimates are tracked (track_running_stats=True, torch's convention: the batch mean of the per-instance
means and of the unbiased per-instance variances, r ← (1 − m) r + m·stat; used in eval).
Parameter names follow torch, so state dicts copy over (tests/foundations/test_group_norm.py).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def group_norm(x: Tensor, groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """x (B, C, *S) -> (B, C, *S), normalised over each group of C/G channels and all of *S."""
    if x.dim() < 2 or x.size(1) % groups:
        raise ValueError(f"group_norm needs (B, C, ...) with C divisible by groups={groups}, got {tuple(x.shape)}")
    b, c = x.shape[:2]
    xg = x.reshape(b, groups, -1)                                          # (B, G, C/G · S)
    mu = xg.mean(dim=-1, keepdim=True)                                     # μ_g, (B, G, 1)
    var = (xg - mu).pow(2).mean(dim=-1, keepdim=True)                      # biased σ²_g, (B, G, 1)
    # Wu & He 2018 eq. (1): x̂ = (x − μ) / sqrt(σ² + ε)
    x_hat = ((xg - mu) * torch.rsqrt(var + eps)).reshape(x.shape)          # (B, C, *S)
    shape = [1, c] + [1] * (x.dim() - 2)
    if weight is not None:
        x_hat = x_hat * weight.view(shape)                                 # y = γ_c x̂ + β_c
    if bias is not None:
        x_hat = x_hat + bias.view(shape)
    return x_hat


class GroupNorm(nn.Module):
    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"num_channels={num_channels} must be a multiple of num_groups={num_groups} > 0")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None     # γ
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None      # β

    def forward(self, x: Tensor) -> Tensor:                                # x: (B, C, *S)
        if x.dim() < 2 or x.size(1) != self.num_channels:
            raise ValueError(f"GroupNorm expects (B, {self.num_channels}, ...), got {tuple(x.shape)}")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.weight is not None}"


class InstanceNorm(nn.Module):
    """InstanceNorm for (B, C, *S) with at least one spatial dim (torch's InstanceNorm1d/2d/3d)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = False,
                 track_running_stats: bool = False) -> None:
        super().__init__()
        if num_features <= 0 or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"InstanceNorm needs num_features > 0 (got {num_features}) and momentum in [0, 1] "
                             f"(got {momentum})")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        self.track_running_stats = track_running_stats
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            # kept for state-dict compatibility; torch's InstanceNorm leaves it at 0 (momentum is never None here)
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:                                # x: (B, C, *S)
        if x.dim() < 3 or x.size(1) != self.num_features:
            raise ValueError(f"InstanceNorm expects (B, {self.num_features}, L, ...), got {tuple(x.shape)}")
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.track_running_stats and not self.training:                # eval with running estimates
            x_hat = (x - self.running_mean.view(shape)) * torch.rsqrt(self.running_var.view(shape) + self.eps)
            if self.weight is not None:
                x_hat = x_hat * self.weight.view(shape) + self.bias.view(shape)
            return x_hat
        if self.track_running_stats:
            with torch.no_grad():
                flat = x.flatten(2)                                        # (B, C, S)
                n = flat.size(-1)
                m = self.momentum
                # the batch mean of per-instance statistics; the variance unbiased (n/(n−1)), like torch
                self.running_mean.mul_(1 - m).add_(m * flat.mean(-1).mean(0))
                self.running_var.mul_(1 - m).add_(m * flat.var(-1, unbiased=True).mean(0))
        # Ulyanov et al. 2016 eq. (2): one group per channel
        return group_norm(x, self.num_features, self.weight, self.bias, self.eps)
