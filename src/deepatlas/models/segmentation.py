"""Semantic segmentation: FCN, U-Net, DeepLab (V5) — a class score for every pixel.

All three take (B, 3, H, W) images to (B, K, H, W) logits and differ in how they get fine detail
back after the encoder has pooled it away:
- FCN (Long et al. 2015): a classification backbone (the A1 ResNet here) with 1×1 "score" layers;
  the coarse score map is upsampled and *summed* with scores from finer stages (FCN-8s "skip"
  fusion, §4.2); without skips it is FCN-32s, one big upsampling of the coarsest map.
- U-Net (Ronneberger et al. 2015): a symmetric encoder–decoder; each decoder level up-convolves
  (2×2 transposed conv) and *concatenates* the encoder's map of the same size before two 3×3 convs.
  skips=False drops the concatenation, to measure what the skips buy at the boundaries.
- DeepLab v3 (Chen et al. 2017): keep resolution with atrous (dilated) convolution instead of a last
  stride — y[i] = Σ_k x[i + r·k] w[k], the receptive field of a stride without losing the grid —
  then ASPP: parallel atrous 3×3 convs at several rates, a 1×1 conv and global image pooling,
  concatenated, fused by a 1×1 conv, and bilinearly upsampled.
Convs are deepatlas.nn.conv.Conv2d with the A1 backbone's conv–BN–ReLU unit (models/cnn.py).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.cnn import BasicBlock, ResNet, conv_bn
from deepatlas.nn.conv import Conv2d


def _backbone(depths: Sequence[int], widths: Sequence[int]) -> ResNet:
    net = ResNet(depths=tuple(depths), widths=tuple(widths), in_channels=3, num_classes=1)
    net.head = nn.Identity()                                        # feature maps only
    return net


def zero_init(layer: Conv2d) -> Conv2d:
    """Start a classifier at zero: every pixel begins at the uniform prediction (loss log K) instead
    of the random scores of wide concatenated features — all three families alike."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class FCN(nn.Module):
    """Backbone stages at strides 1, 2, 4, … 2^(L−1); score_s = 1×1 conv of stage s.
    skips=True (FCN-8s style): S ← up2(S) + score_s from the coarsest stage to the finest used one;
    skips=False (FCN-32s style): only the coarsest score, bilinearly upsampled to the input."""

    def __init__(self, num_classes: int = 5, depths: Sequence[int] = (1, 1, 1, 1),
                 widths: Sequence[int] = (16, 32, 64, 128), skips: bool = True, fuse: int = 3):
        super().__init__()
        self.backbone = _backbone(depths, widths)
        self.skips, self.fuse = skips, min(fuse, len(widths))
        chans = list(widths)                                         # basic blocks: stage s has widths[s] channels
        self.scores = nn.ModuleList([Conv2d(c, num_classes, 1) for c in (chans[-self.fuse:] if skips else chans[-1:])])
        for layer in self.scores:
            zero_init(layer)

    def forward(self, x: Tensor) -> Tensor:
        feats = self.backbone.features(x)[-self.fuse:]              # finest used … coarsest
        score = self.scores[-1](feats[-1])                          # (B, K, H/2^(L−1), W/2^(L−1))
        if self.skips:
            for f, layer in zip(reversed(feats[:-1]), reversed(self.scores[:-1])):
                # FCN-8s: upsample the coarser prediction ×2 and add the finer stage's scores
                score = F.interpolate(score, size=f.shape[-2:], mode="bilinear", align_corners=False) + layer(f)
        return F.interpolate(score, size=x.shape[-2:], mode="bilinear", align_corners=False)   # (B, K, H, W)


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """U-Net's unit: (3×3 conv → BN → ReLU) × 2, padded so the size is kept (the paper's are unpadded)."""
    return nn.Sequential(conv_bn(c_in, c_out, 3), conv_bn(c_out, c_out, 3))


UNET_BLOCKS = {"double": double_conv, "residual": BasicBlock}   # the paper's unit, or the A1 ResNet block


class UNet(nn.Module):
    """Encoder: double_conv at widths w_0 … w_L, 2×2 max-pool between. Decoder level l:
    up = ConvTranspose2d(w_{l+1} → w_l, 2, stride 2); h = double_conv(concat[up, enc_l]) (skips) or
    double_conv(up) (no skips). A 1×1 conv gives the class scores."""

    def __init__(self, num_classes: int = 5, widths: Sequence[int] = (16, 32, 64, 128), skips: bool = True,
                 in_channels: int = 3, block: str = "double"):
        super().__init__()
        if block not in UNET_BLOCKS:
            raise ValueError(f"U-Net block {block!r}; valid: {', '.join(UNET_BLOCKS)}")
        self.skips = skips
        unit = UNET_BLOCKS[block]
        w = list(widths)
        self.down = nn.ModuleList([unit(c_in, c_out) for c_in, c_out in zip([in_channels] + w[:-1], w)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in range(len(w) - 1)])
        self.dec = nn.ModuleList([unit(w[i] * (2 if skips else 1), w[i]) for i in range(len(w) - 1)])
        self.out = zero_init(Conv2d(w[0], num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.size(-1) % 2 ** (len(self.down) - 1) or x.size(-2) % 2 ** (len(self.down) - 1):
            raise ValueError(f"U-Net with {len(self.down)} levels needs H, W divisible by {2 ** (len(self.down) - 1)}, "
                             f"got {tuple(x.shape[-2:])}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))         # (B, w_i, H/2^i, W/2^i)
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = self.up[i](x)                                       # (B, w_i, H/2^i, W/2^i)
            x = self.dec[i](torch.cat([x, skips[i]], dim=1) if self.skips else x)
        return self.out(x)                                          # (B, K, H, W)


def dilate_last_stage(net: ResNet, rate: int = 2) -> ResNet:
    """Replace the last stage's stride 2 by dilation `rate` in its 3×3 convs (DeepLab's atrous trick,
    torchvision's replace_stride_with_dilation): the map keeps the previous stage's resolution."""
    for m in net.stages[-1].modules():
        if isinstance(m, Conv2d):
            kh = m.weight.size(-1)
            m.stride = (1, 1)
            if kh == 3:
                m.dilation, m.padding = (rate, rate), (rate, rate)
    return net


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3 §3.3): 1×1 conv, 3×3 convs at each rate, and the
    image-level feature (global average pool → 1×1 conv → upsample); concatenate, 1×1 conv."""

    def __init__(self, c_in: int, c_out: int, rates: Sequence[int] = (1, 2, 3)):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn(c_in, c_out, 1)])
        for r in rates:
            self.branches.append(nn.Sequential(Conv2d(c_in, c_out, 3, padding=r, dilation=r, bias=False),
                                               nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)))
        self.pool = nn.Sequential(Conv2d(c_in, c_out, 1, bias=False), nn.ReLU(inplace=True))
        self.project = conv_bn(c_out * (len(rates) + 2), c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        outs = [b(x) for b in self.branches]                        # each (B, c_out, h, w)
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True))        # (B, c_out, 1, 1) image-level feature
        outs.append(pooled.expand(-1, -1, x.size(2), x.size(3)))
        return self.project(torch.cat(outs, dim=1))


class DeepLab(nn.Module):
    """ResNet backbone with a dilated last stage (output stride 2^(L−2)) → ASPP → 1×1 classifier →
    bilinear upsampling to the input (v3: no decoder)."""

    def __init__(self, num_classes: int = 5, depths: Sequence[int] = (1, 1, 1, 1),
                 widths: Sequence[int] = (16, 32, 64, 128), aspp_channels: int = 64, rates: Sequence[int] = (1, 2, 3)):
        super().__init__()
        self.backbone = dilate_last_stage(_backbone(depths, widths), 2)
        self.aspp = ASPP(widths[-1], aspp_channels, rates)
        self.classifier = zero_init(Conv2d(aspp_channels, num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        f = self.backbone.features(x)[-1]                           # (B, C, H/os, W/os)
        return F.interpolate(self.classifier(self.aspp(f)), size=x.shape[-2:], mode="bilinear", align_corners=False)


SEGMENTERS = {"fcn": FCN, "unet": UNet, "deeplab": DeepLab}
