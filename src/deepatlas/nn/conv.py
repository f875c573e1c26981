"""2-D convolution and pooling from scratch: im2col + one matrix multiply (map place A1).

A convolution slides a (C_in/g × k_h × k_w) kernel over the input. im2col ("image to columns",
Chellapilla et al. 2006) copies every window the kernel sees into one column, so the whole layer
becomes a single GEMM:

    cols = im2col(x)                      (B, C_in·k_h·k_w, L),  L = H_out · W_out windows
    y    = W · cols + b                   W: (C_out, C_in·k_h·k_w)  ->  (B, C_out, L)

Output size along one axis (Dumoulin & Visin 2016, "A guide to convolution arithmetic", rel. 15):
    n_out = ⌊(n + 2p − d·(k − 1) − 1) / s⌋ + 1
Groups (Krizhevsky et al. 2012; depthwise when g = C_in) split the channels into g independent
convolutions: one batched GEMM over the g groups. Pooling is im2col per channel and a max or a
mean over each window. Autograd differentiates through the gather and the GEMM, so backward
needs no code of its own (tests compare gradients with torch's).

`fast=True` (the modules' default) calls torch's F.conv2d / F.max_pool2d: the models train on
those; the plain path is for reading and is checked equal (tests/nn/test_conv.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Pair = int | tuple[int, int]


def _pair(v: Pair, name: str, minimum: int) -> tuple[int, int]:
    out = (v, v) if isinstance(v, int) else tuple(v)
    if len(out) != 2 or any(not isinstance(a, int) or a < minimum for a in out):
        raise ValueError(f"{name}={v!r}: expected an int ≥ {minimum} or a pair of them")
    return out  # type: ignore[return-value]


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """n_out = ⌊(n + 2p − d(k − 1) − 1)/s⌋ + 1 (Dumoulin & Visin 2016); raises if no window fits."""
    out = (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise ValueError(f"input size {n} with kernel {kernel}, stride {stride}, padding {padding}, "
                         f"dilation {dilation} leaves no output position (n_out = {out})")
    return out


@dataclass(frozen=True)
class Layer:
    """One sliding-window layer for the receptive-field calculator (a conv or a pool)."""
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1


def receptive_field(layers: Sequence[Layer]) -> list[dict[str, float]]:
    """Receptive field r, jump j (input pixels between adjacent outputs) and the centre of the first
    output's field, after each layer (Araujo, Norris & Sim 2019, Distill, eqs. 1–2):
        r_l = r_{l−1} + (k_l − 1)·d_l·j_{l−1},   j_l = j_{l−1}·s_l,
        start_l = start_{l−1} + ((k_l − 1)·d_l / 2 − p_l)·j_{l−1}."""
    r, j, start, out = 1.0, 1.0, 0.5, []
    for layer in layers:
        k_eff = (layer.kernel - 1) * layer.dilation          # extent of the kernel minus one
        r, start, j = r + k_eff * j, start + (k_eff / 2 - layer.padding) * j, j * layer.stride
        out.append({"receptive_field": r, "jump": j, "start": start})
    return out


def im2col(x: Tensor, kernel: Pair, stride: Pair = 1, padding: Pair = 0, dilation: Pair = 1,
           pad_value: float = 0.0) -> Tensor:
    """x (B, C, H, W) -> columns (B, C·k_h·k_w, L), ordered as F.unfold (channel, then kernel row/col).

    One strided slice per kernel offset (k_h·k_w slices, not L): offset (i, j) reads input pixel
    (s·r + d·i − p, s·c + d·j − p) for every output position (r, c)."""
    if x.dim() != 4:
        raise ValueError(f"im2col expects (B, C, H, W), got {tuple(x.shape)}")
    (kh, kw), (sh, sw) = _pair(kernel, "kernel", 1), _pair(stride, "stride", 1)
    (ph, pw), (dh, dw) = _pair(padding, "padding", 0), _pair(dilation, "dilation", 1)
    B, C, H, W = x.shape
    oh, ow = conv_output_size(H, kh, sh, ph, dh), conv_output_size(W, kw, sw, pw, dw)
    xp = F.pad(x, (pw, pw, ph, ph), value=pad_value) if ph or pw else x        # (B, C, H+2p, W+2p)
    patches = [xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
               for i in range(kh) for j in range(kw)]                          # k_h·k_w × (B, C, oh, ow)
    cols = torch.stack(patches, dim=2)                                         # (B, C, k_h·k_w, oh, ow)
    return cols.reshape(B, C * kh * kw, oh * ow)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Pair = 1, padding: Pair = 0,
           dilation: Pair = 1, groups: int = 1, fast: bool = False) -> Tensor:
    """x (B, C_in, H, W), weight (C_out, C_in/g, k_h, k_w) -> (B, C_out, H_out, W_out)."""
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"conv2d expects x (B, C, H, W) and weight (O, C/g, kh, kw), got "
                         f"{tuple(x.shape)} and {tuple(weight.shape)}")
    B, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    if groups < 1 or C % groups or O % groups or Cg != C // groups:
        raise ValueError(f"groups={groups}: input channels {C} and output channels {O} must divide by it "
                         f"and the weight must have C_in/groups = {C // max(groups, 1)} input channels, has {Cg}")
    if fast:
        return F.conv2d(x, weight, bias, _pair(stride, "stride", 1), _pair(padding, "padding", 0),
                        _pair(dilation, "dilation", 1), groups)
    (sh, sw), (ph, pw), (dh, dw) = (_pair(stride, "stride", 1), _pair(padding, "padding", 0),
                                    _pair(dilation, "dilation", 1))
    oh, ow = conv_output_size(H, kh, sh, ph, dh), conv_output_size(W, kw, sw, pw, dw)
    cols = im2col(x, (kh, kw), (sh, sw), (ph, pw), (dh, dw))                    # (B, C·kh·kw, L)
    cols = cols.view(B, groups, Cg * kh * kw, oh * ow)                          # (B, g, C/g·kh·kw, L)
    w = weight.view(groups, O // groups, Cg * kh * kw)                          # (g, O/g, C/g·kh·kw)
    # y_g = W_g · cols_g for each group g: one batched GEMM                     (B, g, O/g, L)
    y = torch.matmul(w, cols)
    y = y.reshape(B, O, oh, ow)
    return y + bias.view(1, O, 1, 1) if bias is not None else y


def max_pool2d(x: Tensor, kernel: Pair, stride: Pair | None = None, padding: Pair = 0, dilation: Pair = 1,
               fast: bool = False) -> Tensor:
    """max over each window; padding counts as −∞ (never the max), stride defaults to the kernel."""
    stride = kernel if stride is None else stride
    if fast:
        return F.max_pool2d(x, kernel, stride, padding, dilation)
    B, C, H, W = x.shape
    kh, kw = _pair(kernel, "kernel", 1)
    cols = im2col(x, kernel, stride, padding, dilation, pad_value=-math.inf)  # (B, C·kh·kw, L)
    oh = conv_output_size(H, kh, _pair(stride, "stride", 1)[0], _pair(padding, "padding", 0)[0],
                          _pair(dilation, "dilation", 1)[0])
    y = cols.view(B, C, kh * kw, -1).amax(dim=2)                               # (B, C, L)
    return y.view(B, C, oh, -1)


def avg_pool2d(x: Tensor, kernel: Pair, stride: Pair | None = None, padding: Pair = 0,
               fast: bool = False) -> Tensor:
    """mean over each window, zero padding counted in the mean (torch's count_include_pad=True)."""
    stride = kernel if stride is None else stride
    if fast:
        return F.avg_pool2d(x, kernel, stride, padding)
    B, C, H, W = x.shape
    kh, kw = _pair(kernel, "kernel", 1)
    cols = im2col(x, kernel, stride, padding)                                  # (B, C·kh·kw, L)
    oh = conv_output_size(H, kh, _pair(stride, "stride", 1)[0], _pair(padding, "padding", 0)[0])
    return cols.view(B, C, kh * kw, -1).mean(dim=2).view(B, C, oh, -1)         # (B, C, oh, ow)


class Conv2d(nn.Module):
    """A conv layer with torch's parameter names and initialisation (weight (O, C/g, kh, kw), bias (O,)),
    so torch state dicts load unchanged. fast=False runs the im2col path above."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Pair, stride: Pair = 1,
                 padding: Pair = 0, dilation: Pair = 1, groups: int = 1, bias: bool = True, fast: bool = True):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        kh, kw = _pair(kernel_size, "kernel_size", 1)
        self.stride, self.padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
        self.dilation, self.groups, self.fast = _pair(dilation, "dilation", 1), groups, fast
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        # torch's default: kaiming_uniform(a=√5), i.e. U(±1/√fan_in) for the weight and the bias
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(in_channels // groups * kh * kw)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups, self.fast)

    def extra_repr(self) -> str:
        O, Cg, kh, kw = self.weight.shape
        return (f"{Cg * self.groups}, {O}, kernel=({kh}, {kw}), stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}, fast={self.fast}")


class MaxPool2d(nn.Module):
    def __init__(self, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0, fast: bool = True):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.fast = kernel_size, stride, padding, fast

    def forward(self, x: Tensor) -> Tensor:
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, fast=self.fast)


class AvgPool2d(nn.Module):
    def __init__(self, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0, fast: bool = True):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.fast = kernel_size, stride, padding, fast

    def forward(self, x: Tensor) -> Tensor:
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding, fast=self.fast)
