"""Position-wise feed-forward networks.

Vaswani et al. 2017 eq. (2):   FFN(x) = max(0, x W₁ + b₁) W₂ + b₂
GELU (Hendrycks & Gimpel 2016) replaces the max (BERT, GPT-2 use its tanh approximation).
ReLU² (So et al. 2021, Primer §3): max(0, x)², the squared ReLU the modded-nanoGPT speedruns use.
SwiGLU (Shazeer 2020, eq. 6):  FFN_SwiGLU(x) = (Swish₁(x W) ⊙ x V) W₂   (LLaMA: gate, up, down)
GEGLU  (Shazeer 2020, eq. 5):  FFN_GEGLU(x)  = (GELU(x W) ⊙ x V) W₂      (Stable Diffusion's U-Net blocks)
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = ("relu", "relu2", "gelu", "gelu_tanh", "silu", "swiglu", "geglu")
GATED = ("swiglu", "geglu")


def activate(x: Tensor, activation: str) -> Tensor:
    """The elementwise non-linearity named `activation` (one of ACTIVATIONS, except the gated swiglu, geglu).

    torch's fused kernels; the same functions written from their formulas are in
    deepatlas.foundations.activations (F2), and tests/nn/test_ffn.py checks the two forms agree."""
    if activation == "relu":
        return F.relu(x)
    if activation == "relu2":       # max(0, x)²
        return F.relu(x).square()
    if activation == "gelu":        # x Φ(x), exact erf form
        return F.gelu(x)
    if activation == "gelu_tanh":   # 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))
        return F.gelu(x, approximate="tanh")
    if activation == "silu":        # Swish₁(x) = x σ(x)
        return F.silu(x)
    raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")


class FeedForward(nn.Module):
    """(..., d_model) -> (..., d_model) through d_ff hidden units.

    up_proj, down_proj (and gate_proj for swiglu, geglu) are W₁ (or V), W₂ (and W) of the equations above.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", bias: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias) if activation in GATED else None
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_proj is not None:
            # Swish₁(x W) ⊙ x V  or  GELU(x W) ⊙ x V                (..., d_ff)
            gate = self.gate_proj(x)
            h = (F.silu(gate) if self.activation == "swiglu" else F.gelu(gate)) * self.up_proj(x)
        else:
            # act(x W₁ + b₁)                                       (..., d_ff)
            h = activate(self.up_proj(x), self.activation)
        return self.down_proj(self.dropout(h))                    # (..., d_model)
