"""8-bit integer quantisation: absmax and zero-point, per tensor and per channel, and LLM.int8().

absmax (symmetric), per tensor or per output channel o:
    s = max |w| / 127,   q = round(w / s) ∈ [−127, 127],   ŵ = s · q
zero-point (asymmetric, affine), for values that are not centred on zero:
    s = (max w − min w) / 255,   z = round(−min w / s) − 128,   q = clamp(round(w / s) + z, −128, 127),
    ŵ = s · (q − z)
Round-trip error bound: |w − ŵ| ≤ s / 2 (per element, within the clamp range).

LLM.int8() (Dettmers et al. 2022, "LLM.int8(): 8-bit Matrix Multiplication for Transformers at
Scale", §3.2, eq. 7): a few hidden dimensions carry outliers |x| ≥ α (α = 6) that int8 would crush.
With O the set of such feature columns of X (any row), the product is decomposed

    X Wᵀ ≈ Σ_{h ∈ O} X_h W_hᵀ  (full precision)  +  diag(c_x) · (Q_x Q_wᵀ) · diag(c_w) / 127²  (int8)

vector-wise quantisation: each row t of X (token) has its own absmax c_x[t], each row o of W
(output unit) its own c_w[o]; Q_x Q_wᵀ is an int32 sum of int8 products. Quantisation of X follows
bitsandbytes' int8_vectorwise_quant (tests/quant/test_int8.py: bit for bit).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LLM_INT8_THRESHOLD = 6.0


def absmax_quantize(w: Tensor, dim: int | None = None) -> tuple[Tensor, Tensor]:
    """-> (q int8, s float32): s = max|w| / 127 over the whole tensor (dim None) or per slice
    along `dim` kept (dim=0 on a (out, in) weight: one scale per output channel)."""
    w = w.detach().float()
    amax = w.abs().amax() if dim is None else w.abs().amax(dim=[d for d in range(w.dim()) if d != dim], keepdim=True)
    s = amax.clamp(min=1e-12) / 127.0
    return torch.round(w / s).clamp(-127, 127).to(torch.int8), s


def absmax_dequantize(q: Tensor, s: Tensor) -> Tensor:
    return q.float() * s


def zeropoint_quantize(w: Tensor, dim: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """-> (q int8, s float32, z float32 integer-valued): the affine map of [min, max] onto
    [−128, 127], per tensor or per slice along `dim`."""
    w = w.detach().float()
    red = None if dim is None else [d for d in range(w.dim()) if d != dim]
    lo = w.amin() if red is None else w.amin(dim=red, keepdim=True)
    hi = w.amax() if red is None else w.amax(dim=red, keepdim=True)
    lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))  # 0 exact
    s = ((hi - lo) / 255.0).clamp(min=1e-12)
    z = torch.round(-lo / s) - 128
    return torch.clamp(torch.round(w / s) + z, -128, 127).to(torch.int8), s, z


def zeropoint_dequantize(q: Tensor, s: Tensor, z: Tensor) -> Tensor:
    return s * (q.float() - z)


def vectorwise_quantize(x: Tensor, threshold: float = 0.0) -> tuple[Tensor, Tensor, Tensor | None]:
    """Row-wise int8 of a 2-D x (rows, features), as bitsandbytes' int8_vectorwise_quant:
    outliers |x| ≥ threshold are left out of each row's absmax and their whole columns are
    zeroed in the codes. -> (q int8 (rows, features), c (rows,) float32 absmax, outlier columns)."""
    x = x.detach()
    cols = None
    if threshold > 0.0:
        outliers = x.abs() >= threshold
        cols = torch.argwhere(outliers.any(dim=0)).view(-1)                     # O
        x = x.masked_fill(outliers, 0)
    c = x.abs().amax(dim=1).float()                                              # c_x[t]
    q = torch.round(x * (127.0 / c.unsqueeze(-1))).to(torch.int8)               # Q_x = round(127 x / c_x)
    if cols is not None and x.size(0) > 1:
        q[:, cols] = 0
    return q, c, cols


def llm_int8_matmul(x: Tensor, q_w: Tensor, c_w: Tensor, w: Tensor | None = None,
                    threshold: float = LLM_INT8_THRESHOLD) -> Tensor:
    """LLM.int8(): x (rows, in) · Wᵀ with W held as q_w (out, in) int8 and c_w (out,) absmax.
    Outlier columns O of x are multiplied in full precision with W's columns (w if given, else
    the int8 weight dequantised); the rest in int8 with int32 sums. -> (rows, out) in x's dtype."""
    q_x, c_x, cols = vectorwise_quantize(x, threshold)
    # int32 Σ_k Q_x[t, k] Q_w[o, k], done in fp64 here (exact for |sums| < 2^53; no CPU int8 GEMM in torch for all shapes)
    acc = q_x.double() @ q_w.double().T                                          # (rows, out)
    # diag(c_x) · acc · diag(c_w) / 127²
    y = (acc * (c_x.double()[:, None] * c_w.double()[None, :]) / (127.0 * 127.0)).float()
    if cols is not None and cols.numel():
        w_o = (w if w is not None else q_w.float() * (c_w[:, None] / 127.0))[:, cols].float()   # (out, |O|)
        y = y + x[:, cols].float() @ w_o.T                                       # Σ_{h∈O} X_h W_hᵀ
    return y.to(x.dtype)


class Int8AbsmaxLinear(nn.Module):
    """A frozen linear layer with per-output-channel absmax int8 weights (1 byte + 4 per row),
    dequantised at each call (weight-only quantisation: activations stay in float)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        q, s = absmax_quantize(linear.weight, dim=0)
        self.register_buffer("q", q)                                             # (out, in) int8
        self.register_buffer("scale", s.reshape(-1))                             # (out,) float32
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return (self.q.float() * self.scale[:, None]).to(dtype)

    def nbytes(self) -> int:
        return self.q.numel() + self.scale.numel() * 4 + (0 if self.bias is None else self.bias.numel() * 4)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.dequantize(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


class LLMInt8Linear(Int8AbsmaxLinear):
    """LLM.int8(): int8 weights and int8 activations; the outlier feature columns (|x| ≥ threshold)
    in full precision against W's columns dequantised from int8 (as bitsandbytes does), so the
    weight stays at 1 byte + one scale per row."""

    def __init__(self, linear: nn.Linear, threshold: float = LLM_INT8_THRESHOLD):
        super().__init__(linear)
        self.threshold = threshold

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        y = llm_int8_matmul(x.reshape(-1, shape[-1]), self.q, self.scale * 127.0, None, self.threshold)
        y = y.reshape(*shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias.to(y.dtype)
