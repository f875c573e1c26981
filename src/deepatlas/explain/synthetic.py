"""A model and an image built so that the evidence for each class lies in one known region.

Class c's evidence is input channel c: a 1×1 identity conv ("mix"), a 3×3 mean per channel ("blur"),
ReLU, global average pooling, identity head. Class 0's evidence is a square (top left), class 1's a
bar (bottom right); a correct explanation of class c must peak inside c's region.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from deepatlas.nn.conv import Conv2d

REGIONS = {0: (slice(2, 7), slice(3, 8)), 1: (slice(14, 16), slice(8, 18))}   # (rows, cols) per class


class TwoEvidenceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = Conv2d(2, 2, 1, bias=False)
        self.blur = Conv2d(2, 2, 3, padding=1, groups=2, bias=False)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.blur.weight.fill_(1 / 9)
            self.head.weight.copy_(torch.eye(2))
            self.head.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.relu(self.blur(self.mix(x))).mean(dim=(2, 3)))


def two_evidence_image(seed: int = 0) -> Tensor:
    """(1, 2, 20, 20): faint noise, channel 0 bright in REGIONS[0], channel 1 in REGIONS[1]."""
    x = torch.rand(1, 2, 20, 20, generator=torch.Generator().manual_seed(seed)) * 0.05
    for c, (rows, cols) in REGIONS.items():
        x[0, c, rows, cols] = 1.0
    return x


def region_mask(cls: int) -> Tensor:
    inside = torch.zeros(20, 20, dtype=torch.bool)
    inside[REGIONS[cls]] = True
    return inside


def peak_in_region(heat: Tensor, cls: int) -> bool:
    """Does the (20, 20) map's maximum lie inside class `cls`'s region?"""
    return bool(region_mask(cls).flatten()[heat.flatten().argmax()])
