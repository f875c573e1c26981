"""Compact weights for inference: linear layers that keep their weights small in memory.

Decoding one token reads every weight once, so on a CPU its time is mostly memory traffic;
fewer bytes per weight means fewer bytes read — if a fused kernel reads them as they are.
    bf16   every weight rounded to bfloat16 (2 bytes; the model computes in bf16)
    int8   per-output-channel symmetric int8: w_oi ≈ s_o · q_oi, s_o = max_i |w_oi| / 127
           y = x Wᵀ = s ⊙ (x Qᵀ)  — the scale comes out of the sum (1 byte + 2 per row);
           fused kernel aten._weight_int8pack_mm (bf16 activations, fp32 accumulation)
    int4   4-bit codes in groups of 32 along each row, with a scale and an offset per group:
           w = d · c + m, c ∈ 0..15 (ggml's Q4_1; 0.625 bytes per weight); fused kernel
           aten._weight_int4pack_mm_for_cpu. From a GGUF's Q4_0 / Q4_1 blocks it takes the file's
           own codes: the same integers, d and m rounded from fp16 to bf16.
    q8     ggml's Q8_0 blocks: 32 weights share one scale d = max |w| / 127, q = round(w / d)
           (1.0625 bytes per weight), dequantised block by block on the fly
BlockQuantLinear also keeps a GGUF tensor's own Q8_0 / Q4_0 / Q4_1 blocks (deepatlas.quant.dequant
has the layouts) and dequantises them on the fly: the file's weights, unchanged, in 1/6..1/4 of fp32
(exact, but slow: the whole fp32 weight is rebuilt at every call).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.quant.dequant import GGML_TYPES, QK, TYPE_IDS

COMPACT = ("fp32", "bf16", "int8", "int4", "q8")


def _fused_call(x: Tensor, out_dim: int, kernel) -> Tensor:
    """(..., in) -> (..., out): the fused kernels take a 2-D bf16 input and return bf16."""
    y = kernel(x.reshape(-1, x.size(-1)).to(torch.bfloat16).contiguous())      # (rows, out) bf16
    return y.reshape(*x.shape[:-1], out_dim).to(x.dtype)


class Int8Linear(nn.Module):
    """y = s ⊙ (x Qᵀ): int8 weights (out, in) with one scale per output row."""

    def __init__(self, weight: Tensor):
        super().__init__()
        w = weight.detach().float()
        # s_o = max_i |w_oi| / 127;  q = round(w / s)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0                 # (out,)
        self.register_buffer("q", torch.round(w / scale[:, None]).to(torch.int8))  # (out, in)
        # the fused kernel wants the scales in the activations' dtype (bf16: rounded, rel. ≤ 2⁻⁸)
        self.register_buffer("scale", scale.to(torch.bfloat16))

    def weight(self) -> Tensor:
        """The weight the layer computes with, (out, in) float32."""
        return self.q.float() * self.scale.float()[:, None]

    def forward(self, x: Tensor) -> Tensor:
        # y = s ⊙ (x Qᵀ) in one pass over the int8 weights: x rounded to bf16, fp32 sums, bf16 out
        return _fused_call(x, self.q.size(0), lambda x2: torch.ops.aten._weight_int8pack_mm(x2, self.q, self.scale))


class Int4Linear(nn.Module):
    """y = x Wᵀ with W (out, in) as 4-bit codes in groups of G = 32 along each row:

        W[o, i] = d[o, g] · c[o, i] + m[o, g],   g = i // G,  c ∈ {0..15}     (ggml's Q4_1)

    aten._weight_int4pack_mm_for_cpu computes W = (c − 8) · s + z per group, so s = d and
    z = m + 8d, both in bf16; x is rounded to bf16, sums are fp32, y is rounded to bf16.
    Q4_0 (W = d · (c − 8)) is the case m = −8d, z = 0.
    """

    GROUP = QK

    def __init__(self, codes: Tensor, d: Tensor, m: Tensor):
        """codes (out, in) integers 0..15; d, m (out, in // 32) float."""
        super().__init__()
        out_dim, in_dim = codes.shape
        if out_dim % 16 or in_dim % self.GROUP:
            raise ValueError(f"int4 weights need out % 16 == 0 and in % 32 == 0, got {tuple(codes.shape)}")
        self.shape = (out_dim, in_dim)
        # packed for the kernel: (out, in / 2) uint8, two codes a byte, in its own order
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            codes.to(torch.int32).contiguous(), 1))
        z = m.float() + 8 * d.float()
        # scales_and_zeros (in / 32, out, 2): [g, o] = (s, z)
        self.register_buffer("scales_and_zeros",
                             torch.stack([d.float(), z], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16))

    @classmethod
    def from_blocks(cls, block: BlockQuantLinear) -> Int4Linear:
        """The same integer codes as a GGUF tensor's Q4_0 / Q4_1 blocks (deepatlas.quant.dequant)."""
        if block.kind not in ("Q4_0", "Q4_1"):
            raise ValueError(f"Int4Linear takes Q4_0 or Q4_1 blocks, not {block.kind}")
        codes = torch.cat([block.qs & 0x0F, block.qs >> 4], dim=-1).reshape(block.shape)  # (out, in)
        d = block.d[..., 0]                                                    # (out, nb)
        m = block.m[..., 0] if block.kind == "Q4_1" else -8 * d
        return cls(codes, d, m)

    @classmethod
    def quantize(cls, weight: Tensor) -> Int4Linear:
        """ggml's quantize_row_q4_1 per block of 32: m = min, d = (max − min) / 15, c = round((w − m) / d)."""
        w = weight.detach().float().reshape(weight.size(0), -1, QK)             # (out, nb, 32)
        lo, hi = w.amin(dim=-1, keepdim=True), w.amax(dim=-1, keepdim=True)
        d = (hi - lo) / 15
        inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / d)
        codes = ((w - lo) * inv + 0.5).floor().clamp(0, 15)                   # from the fp32 d and m
        d, m = d.half().float(), lo.half().float()                             # stored as fp16, as in the file
        return cls(codes.reshape(weight.shape), d[..., 0], m[..., 0])

    def _kernel(self, x2: Tensor) -> Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.packed, self.GROUP, self.scales_and_zeros)

    def forward(self, x: Tensor) -> Tensor:
        return _fused_call(x, self.shape[0], self._kernel)


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


def _linears(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute name, layer) of every nn.Linear and BlockQuantLinear."""
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if isinstance(child, (nn.Linear, BlockQuantLinear))]


def _compact(layer: nn.Module, weights: str, name: str) -> nn.Module:
    if isinstance(layer, nn.Linear) and layer.bias is not None:
        raise ValueError(f"{name} has a bias; compact linears here are bias-free")
    if weights == "int4" and name != "lm_head" and isinstance(layer, BlockQuantLinear) \
            and layer.kind in ("Q4_0", "Q4_1") and layer.shape[0] % 16 == 0:
        return Int4Linear.from_blocks(layer)                                   # the file's own codes
    dense = layer.weight if isinstance(layer, nn.Linear) else layer.weight()   # (out, in) float
    if weights == "q8":
        return BlockQuantLinear.quantize_q8_0(dense)
    # int4: the output head stays 8-bit (its error goes straight into the logits), and so does a
    # layer the int4 kernel cannot take (out not a multiple of 16)
    if weights == "int4" and name != "lm_head" and dense.size(0) % 16 == 0:
        return Int4Linear.quantize(dense)
    return Int8Linear(dense)


def compact_model(model: nn.Module, weights: str) -> nn.Module:
    """Make the model's weights compact in place: one of COMPACT (fp32 leaves it unchanged).

    Layers may be nn.Linear or BlockQuantLinear (a GGUF's kept blocks: int4 then reuses the
    file's Q4_0 / Q4_1 codes as they are)."""
    if weights not in COMPACT:
        raise ValueError(f"unknown weights {weights!r}; valid: {', '.join(COMPACT)}")
    if weights == "bf16":
        return model.to(torch.bfloat16)
    if weights != "fp32":
        for parent, name, layer in _linears(model):
            setattr(parent, name, _compact(layer, weights, name))
    return model
