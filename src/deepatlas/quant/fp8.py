"""Low-precision training arithmetic: FP8 with per-tensor or tile-wise scales, fp16 loss scaling.

FP8 (Micikevicius et al. 2022): e4m3 (max 448, 3 mantissa bits) for forward tensors, e5m2 (max
57344, 2 mantissa bits) for gradients. A tensor is stored as q = fp8(x / s) with a scale s that
maps its largest magnitude onto the format's max, s = amax / fp8_max, and read back as q · s.
One outlier forces a large s on the whole tensor and pushes small values into fp8's subnormals
or to zero. DeepSeek-V3 §3.3.1 scales finer: activations per 1×128 tile (one token, 128
channels), weights per 128×128 block, so an outlier only coarsens its own tile.
Here the rounding is real (torch's float8_e4m3fn / float8_e5m2 casts) and the matmul runs in fp32
on the dequantised values — "simulated FP8": FP8's rounding and range, not FP8 tensor-core speed.
`FP8Linear` trains with it: forward on quantised x and W, straight-through gradients (the
gradient of the rounding taken as identity), grad_output rounded to e5m2 per 1×128 tile.

fp16 loss scaling (Micikevicius et al. 2018 §3.2): gradients smaller than fp16's smallest
subnormal 2⁻²⁴ ≈ 6e-8 flush to zero; multiplying the loss by S shifts them into range, the
weight gradients are divided by S before the update. Dynamic scaling (`DynamicLossScaler`)
halves S and skips the step when a gradient overflows to inf/NaN, and doubles S after
`growth_interval` clean steps (torch.amp.GradScaler's policy).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FORMATS = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
GRANULARITIES = ("tensor", "tile")


def fp8_max(fmt: str) -> float:
    if fmt not in FORMATS:
        raise ValueError(f"fp8 format {fmt!r}; valid: {', '.join(FORMATS)}")
    return float(torch.finfo(FORMATS[fmt]).max)


def _round_fp8(x: Tensor, scale: Tensor, fmt: str) -> Tensor:
    """q · s with q = fp8(x / s): the value FP8 storage gives back."""
    return (x / scale).to(FORMATS[fmt]).to(x.dtype) * scale


def quantize_per_tensor(x: Tensor, fmt: str = "e4m3") -> Tensor:
    """One scale s = amax(|x|) / fp8_max for the whole tensor."""
    scale = (x.abs().amax() / fp8_max(fmt)).clamp_min(1e-30)
    return _round_fp8(x, scale, fmt)


def quantize_tiles(x: Tensor, rows: int, cols: int, fmt: str = "e4m3") -> Tensor:
    """One scale per (rows × cols) tile of the last two dims (1×128 activations, 128×128 weights);
    the dims are padded up to a multiple of the tile for the scales only."""
    *lead, R, C = x.shape
    pr, pc = math.ceil(R / rows) * rows, math.ceil(C / cols) * cols
    padded = F.pad(x, (0, pc - C, 0, pr - R))
    tiles = padded.reshape(*lead, pr // rows, rows, pc // cols, cols)
    # s_tile = amax over the tile / fp8_max                               (..., R/rows, 1, C/cols, 1)
    scale = (tiles.abs().amax(dim=(-3, -1), keepdim=True) / fp8_max(fmt)).clamp_min(1e-30)
    out = _round_fp8(tiles, scale, fmt).reshape(*lead, pr, pc)
    return out[..., :R, :C]


def quantize(x: Tensor, granularity: str, role: str, fmt: str = "e4m3", tile: int = 128) -> Tensor:
    """role 'activation' tiles 1×tile, 'weight' tile×tile (DeepSeek-V3 §3.3.1)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")
    if role not in ("activation", "weight"):
        raise ValueError(f"role {role!r}; valid: activation, weight")
    if granularity == "tensor":
        return quantize_per_tensor(x, fmt)
    return quantize_tiles(x, 1 if role == "activation" else tile, tile, fmt)


def fp8_matmul_error(x: Tensor, w: Tensor, granularity: str, fmt: str = "e4m3", tile: int = 128) -> float:
    """Mean over tokens (rows of x (M, K)) of ‖Q(x_m) Q(W)ᵀ − x_m Wᵀ‖ / ‖x_m Wᵀ‖, W (N, K): each
    token's own relative error, so an outlier token cannot hide the others' loss of precision."""
    exact = x @ w.t()
    approx = quantize(x, granularity, "activation", fmt, tile) @ quantize(w, granularity, "weight", fmt, tile).t()
    return float(((approx - exact).norm(dim=-1) / exact.norm(dim=-1).clamp_min(1e-30)).mean())


class _FP8LinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, bias: Tensor | None, granularity: str, tile: int) -> Tensor:
        xq = quantize(x.reshape(-1, x.size(-1)), granularity, "activation", "e4m3", tile)   # (M, K)
        wq = quantize(w, granularity, "weight", "e4m3", tile)                                # (N, K)
        ctx.save_for_backward(xq, wq)
        ctx.granularity, ctx.tile, ctx.has_bias, ctx.shape = granularity, tile, bias is not None, x.shape
        y = xq @ wq.t()
        return (y if bias is None else y + bias).reshape(*x.shape[:-1], w.size(0))

    @staticmethod
    def backward(ctx, grad: Tensor):
        xq, wq = ctx.saved_tensors
        g = grad.reshape(-1, grad.size(-1))
        g = quantize(g, ctx.granularity, "activation", "e5m2", ctx.tile)      # gradients in e5m2
        # straight-through: d/dx of the rounding taken as 1
        dx = (g @ wq).reshape(ctx.shape)
        dw = g.t() @ xq
        return dx, dw, (g.sum(0) if ctx.has_bias else None), None, None


class FP8Linear(nn.Linear):
    """nn.Linear whose matmuls see FP8-rounded inputs, weights and output gradients."""

    granularity: str = "tile"
    tile: int = 128

    def forward(self, x: Tensor) -> Tensor:
        return _FP8LinearFn.apply(x, self.weight, self.bias, self.granularity, self.tile)


def to_fp8_linears(model: nn.Module, granularity: str = "tile", tile: int = 128) -> nn.Module:
    """Turn every nn.Linear of `model` into an FP8Linear (same parameters, in place)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")
    for m in model.modules():
        if type(m) is nn.Linear:
            m.__class__ = FP8Linear
            m.granularity, m.tile = granularity, tile
    return model


class DynamicLossScaler:
    """S starts at init_scale; a step with a non-finite gradient is skipped and S halves; after
    growth_interval finite steps in a row S doubles."""

    def __init__(self, init_scale: float = 2.0 ** 16, growth_interval: int = 200,
                 factor: float = 2.0, enabled: bool = True):
        self.scale = init_scale if enabled else 1.0
        self.enabled, self.growth_interval, self.factor = enabled, growth_interval, factor
        self.good_steps = 0
        self.skipped = 0

    def unscale_and_check(self, params) -> bool:
        """Divide the gradients by S; True when all are finite (the step may be taken)."""
        finite = True
        for p in params:
            if p.grad is not None:
                p.grad.div_(self.scale)
                finite &= bool(torch.isfinite(p.grad).all())
        if not self.enabled:
            return finite
        if finite:
            self.good_steps += 1
            if self.good_steps % self.growth_interval == 0:
                self.scale *= self.factor
        else:
            self.scale /= self.factor
            self.good_steps = 0
            self.skipped += 1
        return finite
