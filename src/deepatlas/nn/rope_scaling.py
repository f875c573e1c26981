"""RoPE context extension (map place L10): position interpolation, NTK-aware scaling, YaRN.

RoPE rotates plane i by m·θ_i, θ_i = b^(−2i/d) (deepatlas.nn.positions.RotaryEmbedding). A model
trained to length L has never seen the angles of positions m > L; to run it at s·L:
- Position interpolation (Chen et al. 2023, eq. 4):  f'(x, m) = f(x, m / s)  ⇔  θ'_i = θ_i / s,
  every position squeezed into the trained range (high frequencies lose resolution).
- NTK-aware (bloc97 2023): change the base instead, b' = b · s^(d/(d−2)), so the highest
  frequency (i = 0) is untouched and the lowest (i = d/2 − 1) is divided by exactly s:
      θ'_i = (b · s^(d/(d−2)))^(−2i/d).
  Dynamic NTK recomputes b' for the current length T: s_T = s·T/L − (s − 1) (HF's form).
- YaRN (Peng et al. 2023, §3.2-3.4): "NTK-by-parts" — dimension i completes r_i = L / λ_i
  rotations over the trained length (λ_i = 2π/θ_i). Dims with many rotations (r > β = 32) keep
  θ_i (extrapolate), dims with few (r < α = 1) are interpolated θ_i / s, a linear ramp γ between:
      θ'_i = (1 − γ_i) θ_i / s + γ_i θ_i
  and the attention logits are sharpened by a temperature: softmax(q·k / (t √d)),
      √(1/t) = 0.1 ln s + 1,
  applied by scaling cos and sin (so q and k) by √(1/t). The ramp here is the reference code's
  (and HF's): linear in the dimension index between the (floored/ceiled) dims where r = β and
  r = α, which equals the paper's γ(r) outside the ramp.
Checked against transformers.modeling_rope_utils (tests/nn/test_rope_scaling.py).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from deepatlas.nn.positions import RotaryEmbedding

SCALINGS = ("none", "linear", "ntk", "dynamic_ntk", "yarn")


def rope_inv_freq(head_dim: int, theta: float = 10000.0) -> Tensor:
    """θ_i = b^(−2i/d), i = 0..d/2−1."""
    return 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)


def linear_inv_freq(head_dim: int, theta: float, factor: float) -> Tensor:
    """Position interpolation: θ_i / s."""
    return rope_inv_freq(head_dim, theta) / factor


def ntk_inv_freq(head_dim: int, theta: float, factor: float) -> Tensor:
    """NTK-aware: base b · s^(d/(d−2))."""
    return rope_inv_freq(head_dim, theta * factor ** (head_dim / (head_dim - 2)))


def dynamic_ntk_inv_freq(head_dim: int, theta: float, factor: float, seq_len: int, max_len: int) -> Tensor:
    """Dynamic NTK at length seq_len: the NTK base for s_T = s·T/L − (s − 1), T = max(seq_len, L)."""
    s = factor * max(seq_len, max_len) / max_len - (factor - 1)
    return ntk_inv_freq(head_dim, theta, s)


def yarn_attention_factor(factor: float) -> float:
    """√(1/t) = 0.1 ln s + 1 (1 for s ≤ 1)."""
    return 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0


def yarn_inv_freq(head_dim: int, theta: float, factor: float, original_max_len: int,
                  beta_fast: float = 32.0, beta_slow: float = 1.0, truncate: bool = True) -> tuple[Tensor, float]:
    """-> (θ'_i, attention factor √(1/t)) of YaRN."""
    def dim_of(rotations: float) -> float:
        # the dim index 2i/… at which r_i = L θ_i / 2π equals `rotations`: solves L b^(−2i/d) = 2π r
        return head_dim * math.log(original_max_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = dim_of(beta_fast), dim_of(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    gamma = 1 - ramp                                     # 1: keep θ_i (fast dims), 0: θ_i / s
    base = rope_inv_freq(head_dim, theta)
    # θ'_i = (1 − γ_i) θ_i / s + γ_i θ_i
    return (base / factor) * (1 - gamma) + base * gamma, yarn_attention_factor(factor)


class ScaledRotaryEmbedding(RotaryEmbedding):
    """RotaryEmbedding with given frequencies θ'_i and cos/sin multiplied by `attention_factor`."""

    def __init__(self, head_dim: int, inv_freq: Tensor, attention_factor: float = 1.0, max_len: int = 4096):
        super().__init__(head_dim, max_len=1)
        self.attention_factor = attention_factor
        self.inv_freq = inv_freq.float().clone()
        self._build(max_len)

    def _build(self, max_len: int) -> None:
        super()._build(max_len)
        a = getattr(self, "attention_factor", 1.0)
        if a != 1.0:
            self.cos, self.sin = self.cos * a, self.sin * a


def scaled_rope(kind: str, head_dim: int, theta: float = 10000.0, factor: float = 1.0,
                original_max_len: int = 2048, seq_len: int | None = None, max_len: int = 4096) -> RotaryEmbedding:
    """A rotary embedding for `kind` in SCALINGS extended by `factor` past original_max_len."""
    if kind not in SCALINGS:
        raise ValueError(f"unknown RoPE scaling {kind!r}; valid: {', '.join(SCALINGS)}")
    if kind != "none" and factor < 1:
        raise ValueError(f"RoPE scaling factor {factor}; valid: ≥ 1")
    if kind == "none":
        return RotaryEmbedding(head_dim, max_len, theta)
    if kind == "linear":
        return ScaledRotaryEmbedding(head_dim, linear_inv_freq(head_dim, theta, factor), max_len=max_len)
    if kind == "ntk":
        return ScaledRotaryEmbedding(head_dim, ntk_inv_freq(head_dim, theta, factor), max_len=max_len)
    if kind == "dynamic_ntk":
        inv = dynamic_ntk_inv_freq(head_dim, theta, factor, seq_len or original_max_len, original_max_len)
        return ScaledRotaryEmbedding(head_dim, inv, max_len=max_len)
    inv, attn = yarn_inv_freq(head_dim, theta, factor, original_max_len)
    return ScaledRotaryEmbedding(head_dim, inv, attn, max_len=max_len)
