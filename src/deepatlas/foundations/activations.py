"""Activation functions in torch, each written from its formula (map place F2).

The fast library versions (torch.relu, F.gelu, ...) are what models call in practice; these are
the readable definitions, tested equal to torch.nn.functional in tests/foundations/test_activations.py.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def relu(x: Tensor) -> Tensor:
    # ReLU(x) = max(0, x)   (Nair & Hinton 2010)
    return torch.where(x > 0, x, torch.zeros_like(x))


def sigmoid(x: Tensor) -> Tensor:
    # σ(x) = 1 / (1 + e^{−x}); for x < 0 use the equal form e^{x} / (1 + e^{x}) so e^{−x} never overflows
    e = torch.exp(torch.where(x >= 0, -x, x))           # e^{−|x|}, written so the gradient at 0 is right
    return torch.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def tanh(x: Tensor) -> Tensor:
    # tanh(x) = (e^{x} − e^{−x}) / (e^{x} + e^{−x}) = 2σ(2x) − 1  (the σ form cannot overflow)
    return 2.0 * sigmoid(2.0 * x) - 1.0


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    # softmax(x)_i = e^{x_i − m} / Σ_j e^{x_j − m},  m = max_j x_j (shift-invariant; keeps e^{·} ≤ 1)
    z = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return z / z.sum(dim=dim, keepdim=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    # log softmax(x)_i = x_i − logsumexp(x),  logsumexp(x) = m + log Σ_j e^{x_j − m}
    m = x.amax(dim=dim, keepdim=True)
    return x - m - torch.log(torch.exp(x - m).sum(dim=dim, keepdim=True))


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU (Hendrycks & Gimpel 2016). approximate="none": x Φ(x); "tanh": their eq. for GPT-2/BERT."""
    if approximate == "none":
        # GELU(x) = x Φ(x) = x · ½ (1 + erf(x / √2))
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if approximate == "tanh":
        # GELU(x) ≈ ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))
    raise ValueError(f"gelu approximate={approximate!r}; valid: 'none', 'tanh'")


ACTIVATIONS = {"relu": relu, "sigmoid": sigmoid, "tanh": tanh, "gelu": gelu,
               "gelu_tanh": lambda x: gelu(x, approximate="tanh")}


def get_activation(name: str):
    """The activation function called `name` (one of ACTIVATIONS)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} unknown; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]
