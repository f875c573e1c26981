"""Compact weights for inference: linear layers that keep their weights small in memory.

Decoding one token reads every weight once, so on a CPU its time is mostly memory traffic;
fewer bytes per weight means fewer bytes read. Three compact forms:
    bf16   every weight rounded to bfloat16 (2 bytes; the model computes in bf16)
    int8   per-output-channel symmetric int8: w_oi ≈ s_o · q_oi, s_o = max_i |w_oi| / 127
           y = x Wᵀ = s ⊙ (x Qᵀ)  — the scale comes out of the sum (1 byte + 4 per row)
    q8     ggml's Q8_0 blocks: 32 weights share one scale d = max |w| / 127, q = round(w / d)
           (1.0625 bytes per weight), dequantised block by block on the fly
BlockQuantLinear also keeps a GGUF tensor's own Q8_0 / Q4_0 / Q4_1 blocks (deepatlas.quant.dequant
has the layouts) and dequantises them on the fly: the file's weights, unchanged, in 1/6..1/4 of fp32.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.quant.dequant import GGML_TYPES, QK, TYPE_IDS

COMPACT = ("fp32", "bf16", "int8", "q8")


class Int8Linear(nn.Module):
    """y = s ⊙ (x Qᵀ): int8 weights (out, in) with one fp32 scale per output row."""

    def __init__(self, weight: Tensor):
        super().__init__()
        w = weight.detach().float()
        # s_o = max_i |w_oi| / 127;  q = round(w / s)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0                 # (out,)
        self.register_buffer("q", torch.round(w / scale[:, None]).to(torch.int8))  # (out, in)
        self.register_buffer("scale", scale)

    def forward(self, x: Tensor) -> Tensor:
        # y = s ⊙ (x Qᵀ); Q is converted to x's dtype whole at each call (compact in memory, not
        # faster: bench/bench_llama.py measures bf16 as the fast compact form on CPU)
        return F.linear(x, self.q.to(x.dtype)) * self.scale.to(x.dtype)      # (..., out)


class BlockQuantLinear(nn.Module):
    """A weight (out, in) stored as ggml blocks of 32 along each row, dequantised on the fly.

    Q8_0: x = d · q (q int8);  Q4_0: x = d · (q − 8);  Q4_1: x = d · q + m  (q a 4-bit nibble).
    """

    def __init__(self, raw: np.ndarray, ggml_type: int, shape: tuple[int, int]):
        super().__init__()
        name, block_elems, block_bytes, _ = GGML_TYPES[ggml_type]
        if name not in ("Q8_0", "Q4_0", "Q4_1"):
            raise ValueError(f"BlockQuantLinear keeps Q8_0, Q4_0 or Q4_1 blocks, not {name}")
        out_dim, in_dim = shape
        self.kind, self.shape = name, shape
        b = np.ascontiguousarray(raw).reshape(out_dim, in_dim // QK, block_bytes)   # (out, nb, bytes)
        self.register_buffer("d", torch.from_numpy(b[..., 0:2].copy().view(np.float16)).float())  # (out, nb, 1)
        if name == "Q4_1":
            self.register_buffer("m", torch.from_numpy(b[..., 2:4].copy().view(np.float16)).float())
        start = 4 if name == "Q4_1" else 2
        qs = b[..., start:].copy()
        # Q8_0: 32 int8;  Q4_*: 16 bytes, byte j = element j (low nibble) | element j+16 (high)
        self.register_buffer("qs", torch.from_numpy(qs.view(np.int8) if name == "Q8_0" else qs))

    @classmethod
    def quantize_q8_0(cls, weight: Tensor) -> BlockQuantLinear:
        """ggml's quantize_row_q8_0: per block of 32, d = max|w| / 127, q = round(w / d)."""
        w = weight.detach().float().reshape(weight.size(0), -1, QK)             # (out, nb, 32)
        d = w.abs().amax(dim=-1, keepdim=True) / 127.0
        scaled = w * torch.where(d == 0, torch.zeros_like(d), 1.0 / d)
        q = (scaled.sign() * (scaled.abs() + 0.5).floor()).to(torch.int8)     # roundf: half away from 0
        raw = np.concatenate([d.half().numpy().view(np.uint8), q.numpy().view(np.uint8)], axis=-1)
        return cls(raw, TYPE_IDS["Q8_0"], tuple(weight.shape))

    def weight(self) -> Tensor:
        """The dequantised weight (out, in), float32."""
        if self.kind == "Q8_0":
            w = self.d * self.qs.float()                                       # (out, nb, 32)
        else:
            q = torch.cat([self.qs & 0x0F, self.qs >> 4], dim=-1).float()      # (out, nb, 32)
            w = self.d * (q - 8) if self.kind == "Q4_0" else self.d * q + self.m
        return w.reshape(self.shape)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight().to(x.dtype))


def _linears(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if isinstance(child, nn.Linear)]


def compact_model(model: nn.Module, weights: str) -> nn.Module:
    """Make the model's weights compact in place: one of COMPACT (fp32 leaves it unchanged)."""
    if weights not in COMPACT:
        raise ValueError(f"unknown weights {weights!r}; valid: {', '.join(COMPACT)}")
    if weights == "bf16":
        return model.to(torch.bfloat16)
    if weights in ("int8", "q8"):
        for parent, name, lin in _linears(model):
            if lin.bias is not None:
                raise ValueError(f"{name} has a bias; compact linears here are bias-free")
            new = Int8Linear(lin.weight) if weights == "int8" else BlockQuantLinear.quantize_q8_0(lin.weight)
            setattr(parent, name, new)
    return model
