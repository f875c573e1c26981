"""NF4: 4-bit NormalFloat with block-wise scales and double quantisation (QLoRA, map place T2).

Dettmers et al. 2023 ("QLoRA: Efficient Finetuning of Quantized LLMs", §3):

  NF4 levels q_i: quantiles of N(0, 1), normalised to [-1, 1], with an exact zero — 8 for the
  positive half and 7 for the negative half (eq. 4 with offset δ = 0.9677083 = ½(1 − 1/(2·15) + 1 − 1/(2·16))):
        q_i = ½ (Φ⁻¹(i / (2^k + 1)) + Φ⁻¹((i + 1) / (2^k + 1)))   ≈  the table NF4_CODE below
  block-wise absmax: a weight tensor is cut into blocks of B = 64 values (flattened row-major);
        c_b = max |w| in block b,   code(w) = argmin_i |w / c_b − q_i|   (nearest level)
        ŵ = q_code · c_b
  double quantisation (§3 "Double Quantization"): the fp32 scales c_b (32 bits per 64 weights =
  0.5 bit/weight) are themselves quantised to 8 bits in blocks of 256, after subtracting their
  mean: c_b ≈ dyn8[k_b] · s_j + mean(c),  s_j = max |c_b − mean| over block j of 256 scales,
  dyn8 the 8-bit dynamic-tree code (Dettmers 2016). That costs 8/64 + 32/(64·256) ≈ 0.127 bit/weight.

Storage layout is bitsandbytes' (quantize_4bit / dequantize_4bit, tests/quant/test_nf4.py checks
codes, scales and dequantised values bit for bit): two codes a byte, the first element of each
pair in the high nibble.

NF4Linear keeps a frozen weight in this form and dequantises it at each call (to the input's
dtype): QLoRA's base layer, wrapped by deepatlas.tuning.lora.LoRALinear.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# bitsandbytes' NF4 table (float32): the normalised N(0,1) quantiles of normal_map(), rounded
NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=torch.float32)
NF4_OFFSET = 0.9677083
BLOCK = 64          # weights per absmax block
BLOCK2 = 256        # scales per block of the double quantisation


def normal_map(offset: float = NF4_OFFSET) -> Tensor:
    """The NF4 levels from their definition: 8 positive quantiles Φ⁻¹(linspace(δ, ½, 9)[:-1]),
    7 negative ones −Φ⁻¹(linspace(δ, ½, 8)[:-1]), and 0, sorted and divided by the largest."""
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    v = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).sort().values
    return (v / v.max()).float()


def dynamic_map(signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8) -> Tensor:
    """The 8-bit dynamic-tree code (Dettmers 2016, "8-bit approximations for parallelism"): for
    exponent e = 0..6, 2^e fraction steps linearly spaced between 0.1 and 1, scaled by 10^(e−6),
    both signs, plus 0 and 1 — 256 sorted values in [-1, 1] (bitsandbytes' create_dynamic_map)."""
    data: list[float] = []
    non_sign = total_bits - 1
    extra = 2 ** (non_sign - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        n = int(2 ** (i + non_sign - max_exponent_bits) + 1 if signed else 2 ** (i + non_sign - max_exponent_bits + 1) + 1)
        b = torch.linspace(0.1, 1, n, dtype=torch.float32)
        means = (b[:-1] + b[1:]) / 2.0
        scale = 10 ** (-(max_exponent_bits - 1) + i)
        data += (scale * means).tolist() + ((-scale * means).tolist() if signed else [])   # float32 products
    if extra > 0:
        b = torch.linspace(0.1, 1, extra + 1, dtype=torch.float32)
        means = (b[:-1] + b[1:]) / 2.0
        scale = 10 ** (-(max_exponent_bits - 1) + max_exponent_bits - 1)
        data += (scale * means).tolist() + ((-scale * means).tolist() if signed else [])
    data += [0.0, 1.0]
    data += [0.0] * (2 ** total_bits - len(data))
    return torch.tensor(sorted(data), dtype=torch.float32)


DYNAMIC_CODE = dynamic_map()


def _blocks(x: Tensor, block: int) -> tuple[Tensor, int]:
    """Flatten to (n_blocks, block), zero-padding the last block; returns the pad length."""
    flat = x.reshape(-1).float()
    pad = (-flat.numel()) % block
    return F.pad(flat, (0, pad)).view(-1, block), pad


def quantize_blockwise(x: Tensor, code: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """Nearest level of `code` (sorted, in [-1, 1]) after dividing each block by its absmax.
    -> (codes uint8 of x's numel, absmax (n_blocks,) float32)."""
    b, pad = _blocks(x, block)                                                  # (nb, B)
    absmax = b.abs().amax(dim=1)                                                # c_b
    scaled = (b * (1.0 / absmax.clamp(min=1e-38))[:, None]).clamp(-1, 1)        # w / c_b
    # argmin_i |w/c − q_i| for sorted q: count the midpoints below the value
    mid = (code[:-1] + code[1:]) / 2
    idx = torch.bucketize(scaled, mid, out_int32=True).to(torch.uint8)
    return idx.reshape(-1)[: x.numel()], absmax


LUT_SIZE = 65536


def _lut(code: Tensor) -> Tensor:
    """bitsandbytes' CPU kernel (cpu_ops.cpp build_quantize_lut): the nearest level of each of
    65,536 evenly spaced values v_i = −1 + 2i / 65535 (count of midpoints below v_i)."""
    i = torch.arange(LUT_SIZE, dtype=torch.float32)
    v = -1.0 + (2.0 * i) / (LUT_SIZE - 1)
    return torch.bucketize(v, (code[:-1] + code[1:]) * 0.5).to(torch.uint8)


def quantize_blockwise_lut(x: Tensor, code: Tensor, block: int) -> tuple[Tensor, Tensor]:
    """8-bit block-wise quantisation as bitsandbytes' CPU kernel does it: the normalised value
    w / c_b goes to the nearest level through a 65,536-bin lookup table,
        k = LUT[⌊(clamp(w / c_b, −1, 1) + 1) · ½ · 65535 + ½⌋]
    so a value within 1/65535 of a midpoint between two levels may take the neighbour (exact
    nearest otherwise); a block of zeros gets code 0. -> (codes uint8, absmax float32)."""
    b, _ = _blocks(x, block)                                                    # (nb, B)
    absmax = b.abs().amax(dim=1)                                                # c_b
    inv = torch.where(absmax == 0, torch.zeros_like(absmax), 1.0 / absmax)
    v = (b * inv[:, None]).clamp(-1.0, 1.0)
    idx = ((v + 1.0) * 0.5 * (LUT_SIZE - 1) + 0.5).to(torch.int64)              # truncation, as the C cast
    codes = _lut(code)[idx]
    codes[absmax == 0] = 0
    return codes.reshape(-1)[: x.numel()], absmax


def dequantize_blockwise(codes: Tensor, absmax: Tensor, code: Tensor, block: int) -> Tensor:
    """ŵ = code[k] · c_b  -> (numel,) float32."""
    v = code[codes.long()]
    pad = (-v.numel()) % block
    return (F.pad(v, (0, pad)).view(-1, block) * absmax[:, None]).reshape(-1)[: codes.numel()]


@dataclass
class NF4Tensor:
    """A tensor in NF4: packed codes + block scales (double-quantised or plain fp32)."""
    packed: Tensor                 # (ceil(n/2), 1) uint8, element 2j in the high nibble
    shape: tuple[int, ...]
    dtype: torch.dtype             # the dtype it came from and dequantises to by default
    blocksize: int = BLOCK
    absmax: Tensor | None = None   # (n_blocks,) float32 when not double-quantised
    qabsmax: Tensor | None = None  # (n_blocks,) uint8 dyn8 codes of c_b − offset
    absmax2: Tensor | None = None  # (ceil(n_blocks/256),) float32 scales of those
    offset: float = 0.0            # mean(c_b)

    @property
    def double_quant(self) -> bool:
        return self.qabsmax is not None

    def scales(self) -> Tensor:
        """c_b (n_blocks,) float32: c_b = dyn8[k_b] · s_j + offset when double-quantised."""
        if not self.double_quant:
            return self.absmax
        return dequantize_blockwise(self.qabsmax, self.absmax2, DYNAMIC_CODE, BLOCK2) + self.offset

    def nbytes(self) -> int:
        parts = [self.packed, self.absmax, self.qabsmax, self.absmax2]
        return sum(p.numel() * p.element_size() for p in parts if p is not None) + (4 if self.double_quant else 0)

    def dequantize(self, dtype: torch.dtype | None = None) -> Tensor:
        return dequantize_nf4(self, dtype)


def quantize_nf4(w: Tensor, blocksize: int = BLOCK, double_quant: bool = True) -> NF4Tensor:
    """w (any shape, fp32/bf16/fp16) -> NF4Tensor, as bitsandbytes' quantize_4bit(quant_type="nf4")."""
    if blocksize not in (32, 64, 128, 256, 512, 1024, 2048, 4096):
        raise ValueError(f"NF4 blocksize {blocksize}; valid: 32, 64, ..., 4096 (powers of two)")
    if w.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"NF4 quantises float32/bfloat16/float16 tensors, got {w.dtype}")
    codes, absmax = quantize_blockwise(w.detach(), NF4_CODE.to(w.device), blocksize)
    if codes.numel() % 2:
        codes = F.pad(codes, (0, 1), value=7)                                  # the code of 0, as bitsandbytes pads
    packed = ((codes[0::2] << 4) | codes[1::2]).unsqueeze(1)                   # two 4-bit codes a byte
    out = NF4Tensor(packed, tuple(w.shape), w.dtype, blocksize)
    if not double_quant:
        out.absmax = absmax
        return out
    # double quantisation: c_b − mean(c) in 8 bits, blocks of 256 scales
    offset = absmax.mean()
    out.qabsmax, out.absmax2 = quantize_blockwise_lut(absmax - offset, DYNAMIC_CODE.to(w.device), BLOCK2)
    out.offset = float(offset)
    return out


def dequantize_nf4(t: NF4Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """ŵ = NF4[code] · c_b, in `dtype` (default: the original dtype), shape t.shape."""
    p = t.packed.reshape(-1)
    n = math.prod(t.shape)
    # one lookup per byte: byte b -> (NF4[b >> 4], NF4[b & 15]), the two levels it holds   (n,)
    levels = F.embedding(p.int(), _BYTE_LEVELS.to(p.device)).reshape(-1)[:n]
    pad = (-n) % t.blocksize
    w = (F.pad(levels, (0, pad)).view(-1, t.blocksize) * t.scales()[:, None]).reshape(-1)[:n]   # NF4[code] · c_b
    return w.reshape(t.shape).to(dtype or t.dtype)


_BYTE_LEVELS = torch.stack([NF4_CODE[torch.arange(256) >> 4], NF4_CODE[torch.arange(256) & 15]], dim=1)  # (256, 2)


class _DequantMatmul(torch.autograd.Function):
    """y = x ŵᵀ with ŵ rebuilt from the 4-bit weight in forward and again in backward:
    dL/dx = dL/dy · ŵ; the frozen weight takes no gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, layer: "NF4Linear") -> Tensor:
        ctx.layer = layer
        return F.linear(x, layer.dequantize(x.dtype))

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad @ ctx.layer.dequantize(grad.dtype), None


class NF4Linear(nn.Module):
    """A frozen linear layer whose weight (out, in) is held in NF4 (≈ 4.13 bits a weight) and
    dequantised at each call to the input's dtype; the bias (if any) stays in full precision."""

    def __init__(self, linear: nn.Linear, blocksize: int = BLOCK, double_quant: bool = True):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.nf4 = quantize_nf4(linear.weight.detach(), blocksize, double_quant)
        for name in ("packed", "absmax", "qabsmax", "absmax2"):   # as buffers: .to(device) moves them
            value = getattr(self.nf4, name)
            if value is not None:
                self.register_buffer(name, value)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def _state(self) -> NF4Tensor:
        n = self.nf4
        return NF4Tensor(self.packed, n.shape, n.dtype, n.blocksize, getattr(self, "absmax", None),
                         getattr(self, "qabsmax", None), getattr(self, "absmax2", None), n.offset)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return dequantize_nf4(self._state(), dtype)

    def nbytes(self) -> int:
        return self._state().nbytes() + (0 if self.bias is None else self.bias.numel() * self.bias.element_size())

    def forward(self, x: Tensor) -> Tensor:
        # y = x ŵᵀ + b, ŵ dequantised in x's dtype (bf16 or fp32 compute); backward dequantises
        # again instead of keeping ŵ, so training holds only the 4-bit weights (bitsandbytes' MatMul4Bit)
        y = _DequantMatmul.apply(x, self)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, block={self.nf4.blocksize}, dq={self.nf4.double_quant}"
