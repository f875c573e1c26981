"""Vanishing gradients in deep nets, and the residual + LayerNorm fix (map place F5).

Backpropagation through a plain net h_{l+1} = φ(W_l h_l + b_l) multiplies the gradient by one
Jacobian per layer:

    ∂L/∂h_l = W_lᵀ diag(φ'(a_l)) ∂L/∂h_{l+1}

For the sigmoid φ' ≤ 1/4, so with weights of unit gain (Glorot & Bengio 2010 init) each layer
shrinks the gradient by ~4× or more and the first of 20 layers gets a gradient ~10⁻¹⁰ of the last.
ReLU has φ' ∈ {0, 1}; with He et al. 2015 init (Var W = 2 / fan_in) the product keeps its scale.
A residual block (He et al. 2016, pre-norm form of "Identity Mappings", eq. 5)

    h_{l+1} = h_l + W_l φ(LN(h_l))      ⇒     ∂L/∂h_l = ∂L/∂h_{l+1} (I + ∂F_l/∂h_l)

keeps an identity term in every factor, so the gradient reaches the first layer undiminished;
LayerNorm (Ba et al. 2016) keeps each branch's input at unit scale however large h grows.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from deepatlas.foundations.activations import get_activation
from deepatlas.foundations.mlp import MLP
from deepatlas.nn.norms import LayerNorm

NET_KINDS = ("sigmoid", "relu", "residual")


class ResidualMLP(nn.Module):
    """x → W_in → [h + W_l relu(LN(h))] × depth → LN → W_out: pre-norm residual blocks."""

    def __init__(self, n_in: int, n_out: int, width: int, depth: int, activation: str = "relu") -> None:
        super().__init__()
        self.input = nn.Linear(n_in, width)
        self.norms = nn.ModuleList(LayerNorm(width) for _ in range(depth))
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.act = get_activation(activation)
        self.final_norm = LayerNorm(width)
        self.output = nn.Linear(width, n_out)

    def forward(self, x: Tensor) -> Tensor:                      # (N, n_in) -> (N, n_out)
        h = self.input(x)                                         # (N, width)
        for norm, linear in zip(self.norms, self.blocks):
            h = h + linear(self.act(norm(h)))                     # h_{l+1} = h_l + W_l φ(LN(h_l))
        return self.output(self.final_norm(h))

    def linears(self) -> list[nn.Linear]:
        return [self.input, *self.blocks, self.output]


def deep_net(kind: str, n_in: int, n_out: int, width: int = 64, depth: int = 20,
             seed: int = 0) -> nn.Module:
    """A net with `depth` hidden layers: plain sigmoid (Glorot init), plain ReLU (He init), or
    pre-norm residual + LayerNorm. Each init is the one designed for its activation, so the
    comparison is between architectures, not between good and bad initialisations."""
    if kind not in NET_KINDS:
        raise ValueError(f"net kind {kind!r} unknown; valid: {', '.join(NET_KINDS)}")
    torch.manual_seed(seed)
    if kind == "residual":
        return ResidualMLP(n_in, n_out, width, depth)
    net = MLP([n_in] + [width] * depth + [n_out], activation=kind)
    for linear in net.linears:
        if kind == "sigmoid":  # Glorot & Bengio 2010, eq. 16: Var W = 2 / (fan_in + fan_out)
            nn.init.xavier_normal_(linear.weight)
        else:                  # He et al. 2015, eq. 10: Var W = 2 / fan_in
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
    return net


def net_linears(net: nn.Module) -> list[nn.Linear]:
    """The weight layers of a deep_net, input to output."""
    return net.linears() if isinstance(net, ResidualMLP) else list(net.linears)


def layer_gradient_norms(net: nn.Module, x: Tensor, y: Tensor) -> list[float]:
    """‖∂L/∂W_l‖_F of each weight layer (input first) for the cross-entropy loss on (x, y)."""
    net.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    return [linear.weight.grad.norm().item() for linear in net_linears(net)]
