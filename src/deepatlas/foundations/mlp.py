"""Multi-layer perceptrons in torch (map places F2 and F4).

MLP: x → [Linear → (norm) → activation → (dropout)] × depth → Linear, i.e. h_{l+1} = φ(W_l h_l + b_l).
The norm and dropout are this package's own layers (deepatlas.nn.norms), so F4's experiment trains
exactly the code that tests/nn/test_norms.py checks against torch.

GaussianMLP: a shared trunk with a mean head μ(x) and a log-variance head s(x) = log σ²(x), trained by
the Gaussian NLL (Nix & Weigend 1994) so σ(x) can follow noise that changes with x.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from deepatlas.foundations.activations import get_activation
from deepatlas.nn.norms import BatchNorm, Dropout, LayerNorm

NORMS = ("none", "batch", "layer")


class MLP(nn.Module):
    def __init__(self, sizes: Sequence[int], activation: str = "relu", norm: str = "none",
                 dropout: float = 0.0) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"MLP sizes need at least (in, out), got {list(sizes)}")
        if norm not in NORMS:
            raise ValueError(f"norm {norm!r} unknown; valid: {', '.join(NORMS)}")
        self.act = get_activation(activation)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        hidden = list(sizes[1:-1])
        make_norm = {"none": lambda d: nn.Identity(), "batch": BatchNorm, "layer": LayerNorm}[norm]
        self.norms = nn.ModuleList(make_norm(d) for d in hidden)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:                              # (N, in) -> (N, out)
        for linear, norm in zip(self.linears[:-1], self.norms):
            x = self.drop(self.act(norm(linear(x))))                      # h_{l+1} = φ(N(W h_l + b))
        return self.linears[-1](x)


class GaussianMLP(nn.Module):
    """Predicts (μ(x), log σ²(x)) for regression with input-dependent noise."""

    def __init__(self, n_in: int, hidden: int = 64, depth: int = 2, activation: str = "tanh") -> None:
        super().__init__()
        self.trunk = MLP([n_in] + [hidden] * depth, activation=activation)
        self.act = get_activation(activation)
        self.mean_head = nn.Linear(hidden, 1)
        self.log_var_head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:               # (N, in) -> (N,), (N,)
        h = self.act(self.trunk(x))                                       # (N, hidden)
        return self.mean_head(h).squeeze(-1), self.log_var_head(h).squeeze(-1)
