"""Position information: sinusoidal (Vaswani et al. 2017 §3.5), learned, rotary (Su et al. 2021).

Sinusoidal and learned tables are added to the token embeddings; rotary embeddings rotate the
queries and keys inside attention so that q·k depends only on the relative offset.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> Tensor:
    """(max_len, d_model) table of Vaswani et al. 2017 §3.5."""
    if d_model % 2 != 0:
        raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]           # (L, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)            # (d/2,)
    angle = pos / base ** (two_i / d_model)                             # (L, d/2)
    table = torch.empty(max_len, d_model, dtype=torch.float64)
    # PE(pos, 2i) = sin(pos / 10000^{2i/d}),  PE(pos, 2i+1) = cos(pos / 10000^{2i/d})
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table.float()


class SinusoidalPositions(nn.Module):
    """forward(T, offset) -> (T, d_model): fixed sinusoids, no parameters."""

    def __init__(self, d_model: int, max_len: int = 4096):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, T: int, offset: int = 0) -> Tensor:
        if offset + T > self.table.size(0):
            raise ValueError(f"positions up to {offset + T} exceed max_len {self.table.size(0)}")
        return self.table[offset:offset + T]


class LearnedPositions(nn.Module):
    """forward(T, offset) -> (T, d_model): one trained vector per absolute position (GPT-2, BERT)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def forward(self, T: int, offset: int = 0) -> Tensor:
        if offset + T > self.weight.size(0):
            raise ValueError(f"positions up to {offset + T} exceed max_len {self.weight.size(0)}")
        return self.weight[offset:offset + T]


def rotate_half(x: Tensor) -> Tensor:
    """[x1, x2] -> [-x2, x1] on the last dim: pairs (i, i + d/2) are the rotated planes (HF convention)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate plane (i, i + d/2) of x by angle pos·θ_i  (Su et al. 2021, eq. 34, rotate-half layout)."""
    # R_θ x = x ⊙ cos θ + rotate_half(x) ⊙ sin θ
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """RoPE: forward(q, k, offset) rotates q, k: (B, H, T, hd) at positions offset..offset+T-1.

    θ_i = theta^(-2i/hd), i = 0..hd/2-1 (Su et al. 2021 eq. 15); `offset` is the KV-cache position,
    or a (B, T) tensor of positions. Equal to HF's apply_rotary_pos_emb (tests/nn/test_positions.py).
    """

    def __init__(self, head_dim: int, max_len: int = 4096, theta: float = 10000.0):
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        self.head_dim, self.theta = head_dim, theta
        # θ_i = base^(-2i/d)
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._build(max_len)

    def _build(self, max_len: int) -> None:
        pos = torch.arange(max_len, dtype=torch.float32, device=self.inv_freq.device)
        angles = torch.outer(pos, self.inv_freq)                        # (L, hd/2)
        angles = torch.cat((angles, angles), dim=-1)                    # (L, hd): plane i uses i and i+hd/2
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def cos_sin(self, T: int, offset: int | Tensor = 0) -> tuple[Tensor, Tensor]:
        """cos, sin of shape (T, hd) for an int offset, (B, 1, T, hd) for a (B, T) position tensor."""
        if isinstance(offset, Tensor):
            if int(offset.max()) >= self.cos.size(0):
                self._build(2 * int(offset.max()) + 1)
            return self.cos[offset][:, None], self.sin[offset][:, None]
        if offset + T > self.cos.size(0):
            self._build(2 * (offset + T))
        return self.cos[offset:offset + T], self.sin[offset:offset + T]

    def forward(self, q: Tensor, k: Tensor, offset: int | Tensor = 0) -> tuple[Tensor, Tensor]:
        cos, sin = self.cos_sin(q.size(-2), offset)
        return (apply_rotary(q, cos.to(q.dtype), sin.to(q.dtype)),
                apply_rotary(k, cos.to(k.dtype), sin.to(k.dtype)))
