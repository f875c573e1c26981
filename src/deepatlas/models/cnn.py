"""Convolutional backbones, in the order they came: LeNet-5 → VGG → ResNet (map place A1).

- LeNet-5 (LeCun et al. 1998): conv 5×5 → pool → conv 5×5 → pool → 3 fully connected layers.
- VGG (Simonyan & Zisserman 2015): stacks of 3×3 convs (two 3×3 see what one 5×5 sees, with fewer
  weights and one more non-linearity) and 2×2 max-pools; here with BatchNorm (Ioffe & Szegedy 2015).
- ResNet (He et al. 2016): each block learns a residual, y = F(x) + shortcut(x) (eq. 1); the shortcut
  is the identity, or a 1×1 strided conv + BN when the shape changes ("projection", option B, eq. 2).
  Basic block: two 3×3 convs; bottleneck: 1×1 reduce → 3×3 → 1×1 expand (×4), for deeper nets.

Every backbone has `features(x)` -> the feature maps of each stage (for detection/segmentation
heads to reuse) and `forward(x)` -> logits. Convs are deepatlas.nn.conv.Conv2d (im2col with
fast=False; the models train on its fast path, torch's kernel). BatchNorm is torch's fused
nn.BatchNorm2d; our from-the-formula BatchNorm (nn/norms.py) is checked equal to it in F4.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from deepatlas.nn.conv import AvgPool2d, Conv2d, MaxPool2d


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """conv (no bias: BN's β replaces it) → BatchNorm → ReLU."""
    layers: list[nn.Module] = [Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(c_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class LeNet5(nn.Module):
    """LeNet-5 for 28×28 inputs: the 32×32 of the paper by padding 2; tanh and average pooling as there."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = Conv2d(in_channels, 6, 5, padding=2)          # C1: (B, 6, 28, 28)
        self.pool1 = AvgPool2d(2)                                   # S2: (B, 6, 14, 14)
        self.conv2 = Conv2d(6, 16, 5)                               # C3: (B, 16, 10, 10)
        self.pool2 = AvgPool2d(2)                                   # S4: (B, 16, 5, 5)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(),
                                  nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes))

    def features(self, x: Tensor) -> list[Tensor]:
        c1 = torch.tanh(self.conv1(x))
        c3 = torch.tanh(self.conv2(self.pool1(c1)))
        return [c1, c3]

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (28, 28):
            raise ValueError(f"LeNet5 takes 28×28 images (its dense layer is sized for them), got {tuple(x.shape)}")
        return self.head(self.pool2(self.features(x)[-1]))


class VGG(nn.Module):
    """stages of `depth` conv3×3-BN-ReLU then a 2×2 max-pool; global average pool; linear head."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128), depth: int = 2, in_channels: int = 1,
                 num_classes: int = 10):
        super().__init__()
        stages, c = [], in_channels
        for w in widths:
            stages.append(nn.Sequential(*[conv_bn(c if i == 0 else w, w) for i in range(depth)], MaxPool2d(2)))
            c = w
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(c, num_classes)

    def features(self, x: Tensor) -> list[Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)                                            # (B, w, H/2^s, W/2^s)
            out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x)[-1].mean(dim=(2, 3)))    # global average pool (B, C)


class BasicBlock(nn.Module):
    """y = ReLU(BN(conv3×3(ReLU(BN(conv3×3(x))))) + shortcut(x))   (He et al. 2016, fig. 2 left)."""
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = conv_bn(c_in, width, 3, stride)
        self.conv2 = conv_bn(width, c_out, 3, 1, relu=False)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def residual(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))

    def forward(self, x: Tensor) -> Tensor:
        # eq. (1)/(2): y = F(x, {W_i}) + x  (or + W_s x when the shape changes)
        return torch.relu(self.residual(x) + self.shortcut(x))


class Bottleneck(BasicBlock):
    """1×1 reduce → 3×3 (stride here, as in torchvision's "ResNet v1.5") → 1×1 expand ×4 (fig. 5 right)."""
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        nn.Module.__init__(self)
        c_out = width * self.expansion
        self.conv1 = conv_bn(c_in, width, 1)
        self.conv2 = conv_bn(width, width, 3, stride)
        self.conv3 = conv_bn(width, c_out, 1, relu=False)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def residual(self, x: Tensor) -> Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """identity when the shape is kept; else the projection W_s: 1×1 conv with the stride, then BN."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return conv_bn(c_in, c_out, 1, stride, relu=False)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """A stem, then stages; stage s > 0 halves the resolution.

    stem="small": one 3×3 conv-BN-ReLU (28×28 images need no early downsampling); stem="imagenet":
    7×7/2 conv-BN-ReLU and a 3×3/2 max-pool (He et al. 2016, table 1).
    ResNet(depths=(2, 2, 2, 2), widths=(64, 128, 256, 512), stem="imagenet") is ResNet-18, and with
    depths=(3, 4, 6, 3), block="bottleneck" ResNet-50 (tests: equal to HF ResNetModel)."""

    def __init__(self, depths: Sequence[int] = (2, 2, 2), widths: Sequence[int] = (32, 64, 128),
                 block: str = "basic", in_channels: int = 1, num_classes: int = 10, stem_width: int | None = None,
                 stem: str = "small"):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; valid: {', '.join(BLOCKS)}")
        if stem not in ("small", "imagenet"):
            raise ValueError(f"unknown stem {stem!r}; valid: small, imagenet")
        if len(depths) != len(widths) or not depths:
            raise ValueError(f"depths {tuple(depths)} and widths {tuple(widths)} need the same (non-zero) length")
        Block = BLOCKS[block]
        stem_width = stem_width or widths[0]
        if stem == "small":
            self.stem = conv_bn(in_channels, stem_width, 3)
        else:
            self.stem = nn.Sequential(Conv2d(in_channels, stem_width, 7, 2, 3, bias=False), nn.BatchNorm2d(stem_width),
                                      nn.ReLU(inplace=True), MaxPool2d(3, 2, 1))
        stages, c = [], stem_width
        for s, (n, w) in enumerate(zip(depths, widths)):
            blocks = []
            for i in range(n):
                blocks.append(Block(c, w, stride=2 if (s > 0 and i == 0) else 1))
                c = w * Block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_channels = c
        self.head = nn.Linear(c, num_classes)

    def features(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)                                            # (B, stem, H, W)
        out = []
        for stage in self.stages:
            x = stage(x)                                            # (B, w·e, H/2^s, W/2^s)
            out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x)[-1].mean(dim=(2, 3)))    # global average pool → (B, classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def set_fast(model: nn.Module, fast: bool) -> nn.Module:
    """Switch every conv and pool of `model` between torch's kernels and the im2col path."""
    for m in model.modules():
        if isinstance(m, (Conv2d, MaxPool2d, AvgPool2d)):
            m.fast = fast
    return model
