"""Normalisation layers and inverted dropout, written from their formulas (map place F4).

One piece of code per idea: the transformer and Llama models use these same `LayerNorm` and
`RMSNorm`; parameter names (`weight`, `bias`, `running_mean`, `running_var`) follow torch so
Hugging Face / torch state dicts copy over unchanged.

- LayerNorm  (Ba, Kiros & Hinton 2016, eq. 4):   y = (x − μ) / sqrt(σ² + ε) · g + b,
  μ and σ² (biased) over the last dimension of each example.
- RMSNorm    (Zhang & Sennrich 2019, eq. 4):     y = x / sqrt(mean(x²) + ε) · g   (no centring, no bias).
- BatchNorm  (Ioffe & Szegedy 2015, Alg. 1):     y = (x − μ_B) / sqrt(σ²_B + ε) · γ + β,
  μ_B, σ²_B (biased) over the batch (and spatial positions); in eval the running estimates are used.
- Dropout    (Srivastava et al. 2014, "inverted" form): y = m ⊙ x / (1 − p), m ~ Bernoulli(1 − p),
  so E[y] = x in training and evaluation is the identity.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor | None, eps: float, fast: bool = True) -> Tensor:
    """x: (..., dim) -> (..., dim), normalised over the last dimension.

    `fast` is torch's one fused kernel (forward and backward); the plain path is the formula, and
    tests/nn/test_norms.py checks both against nn.LayerNorm."""
    if fast:
        return F.layer_norm(x, weight.shape, weight, bias, eps)
    mu = x.mean(dim=-1, keepdim=True)                                      # (..., 1)
    var = (x - mu).pow(2).mean(dim=-1, keepdim=True)                       # biased σ², (..., 1)
    # Ba et al. 2016 eq. (4): y = (x − μ) / sqrt(σ² + ε) · g + b
    y = (x - mu) * torch.rsqrt(var + eps) * weight
    return y + bias if bias is not None else y


def rms_norm(x: Tensor, weight: Tensor, eps: float, fast: bool = True) -> Tensor:
    """x: (..., dim) -> (..., dim). Statistics in fp32, the normalised x cast back, then · g.

    `fast` takes torch's F.rms_norm for fp32 inputs (the same computation in one kernel); other
    dtypes keep the plain path, whose fp32-then-cast order is Llama's (and HF's) exactly."""
    if fast and x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)
    xf = x.float()
    # Zhang & Sennrich 2019 eq. (4): y = x / sqrt(mean(x²) + ε) · g
    y = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return y.to(x.dtype) * weight


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension; `bias=False` gives the bias-free variant (e.g. OLMo).

    fast=False computes the formula (layer_norm above) instead of torch's fused kernel."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True, fast: bool = True) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"LayerNorm dim must be a positive int, got {dim}")
        self.dim, self.eps, self.fast = dim, eps, fast
        self.weight = nn.Parameter(torch.ones(dim))                        # g
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None       # b

    def forward(self, x: Tensor) -> Tensor:                                # x: (..., dim)
        return layer_norm(x, self.weight, self.bias, self.eps, self.fast)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, bias={self.bias is not None}, fast={self.fast}"


class RMSNorm(nn.Module):
    """RMSNorm over the last dimension (Llama, T5). Statistics in fp32, result cast back.

    fast=False computes the formula (rms_norm above) whatever the dtype."""

    def __init__(self, dim: int, eps: float = 1e-6, fast: bool = True) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"RMSNorm dim must be a positive int, got {dim}")
        self.dim, self.eps, self.fast = dim, eps, fast
        self.weight = nn.Parameter(torch.ones(dim))                        # g

    def forward(self, x: Tensor) -> Tensor:                                # x: (..., dim)
        return rms_norm(x, self.weight, self.eps, self.fast)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, fast={self.fast}"


class BatchNorm(nn.Module):
    """BatchNorm over every dimension but the channel dim 1: (B, C) or (B, C, *spatial).

    Running statistics follow torch's convention: r ← (1 − momentum)·r + momentum·batch_stat,
    with the *unbiased* batch variance (n/(n−1)·σ²_B) stored in `running_var` while the biased
    one normalises the batch (Ioffe & Szegedy 2015, Alg. 2 step 10 uses m/(m−1) the same way).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"BatchNorm num_features must be a positive int, got {num_features}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm momentum must be in [0, 1], got {momentum}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))               # γ
        self.bias = nn.Parameter(torch.zeros(num_features))                # β
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:                                # x: (B, C, *S)
        if x.dim() < 2 or x.size(1) != self.num_features:
            raise ValueError(f"BatchNorm expects (B, {self.num_features}, ...), got {tuple(x.shape)}")
        dims = [0] + list(range(2, x.dim()))                               # all but channels
        shape = [1, -1] + [1] * (x.dim() - 2)                              # broadcast (1, C, 1, ...)
        if self.training:
            n = x.numel() // x.size(1)                                     # values per channel
            if n < 2:
                raise ValueError(f"BatchNorm in training needs > 1 value per channel, got {n}")
            mu = x.mean(dim=dims)                                          # μ_B, (C,)
            var = (x - mu.view(shape)).pow(2).mean(dim=dims)               # biased σ²_B, (C,)
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mu)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))   # unbiased, like torch
                self.num_batches_tracked.add_(1)
        else:
            mu, var = self.running_mean, self.running_var
        # Ioffe & Szegedy 2015 Alg. 1: x̂ = (x − μ_B)/sqrt(σ²_B + ε);  y = γ x̂ + β
        x_hat = (x - mu.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return x_hat * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


def dropout_mask(shape: torch.Size | tuple[int, ...], p: float, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """Keep-mask m ~ Bernoulli(1 − p) as a bool tensor of `shape`."""
    return torch.rand(shape, generator=generator, device=device) >= p


def dropout(x: Tensor, p: float, training: bool = True, mask: Tensor | None = None) -> Tensor:
    """Inverted dropout: y = m ⊙ x / (1 − p) in training, x in eval. `mask` (bool) may be given."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    if mask is None:
        mask = dropout_mask(x.shape, p, device=x.device)
    # Srivastava et al. 2014, inverted: scale the kept units by 1/(1 − p) so E[y] = x
    return x * mask.to(x.dtype) / (1.0 - p)


class Dropout(nn.Module):
    """Inverted dropout as a module; identity in `eval()`."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
