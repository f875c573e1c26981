"""A noise-aware classifier p_φ(y | x_t, t) for classifier guidance (Dhariwal & Nichol 2021 §4).

It must read noisy x_t at every level t, so it is trained on x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε with
t ~ U{0..T−1} and takes t through the U-Net's time embedding: the U-Net's own residual blocks
(models/unet.py) with a pooled linear head (Dhariwal & Nichol use the U-Net's encoder half)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.diffusion.schedule import NoiseSchedule
from deepatlas.models.unet import ResBlock, embedding_mlp, timestep_embedding


class NoisyClassifier(nn.Module):
    """(x_t (B, 1, S, S), t (B,)) -> class logits (B, n_classes)."""

    def __init__(self, n_classes: int = 10, width: int = 16, groups: int = 8):
        super().__init__()
        self.width = width
        temb = 4 * width
        self.time_mlp = embedding_mlp(width, temb)
        self.conv_in = nn.Conv2d(1, width, 3, padding=1)
        self.block1 = ResBlock(width, 2 * width, temb, groups)
        self.down = nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1)
        self.block2 = ResBlock(2 * width, 2 * width, temb, groups)
        self.norm = nn.GroupNorm(groups, 2 * width)
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        temb = self.time_mlp(timestep_embedding(t, self.width))
        h = self.block1(self.conv_in(x), temb)
        h = self.block2(self.down(h), temb)
        return self.head(F.silu(self.norm(h)).mean(dim=(2, 3)))        # global average pool


def train_noisy_classifier(x: Tensor, y: Tensor, schedule: NoiseSchedule, steps: int, batch: int = 64,
                           lr: float = 2e-3, seed: int = 0) -> NoisyClassifier:
    """Cross-entropy on noised training images (t uniform), Adam with linear decay."""
    torch.manual_seed(seed)
    clf = NoisyClassifier()
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        t = torch.randint(0, schedule.T, (batch,), generator=g)
        x_t = schedule.add_noise(x[idx], torch.randn(x[idx].shape, generator=g), t)
        loss = F.cross_entropy(clf(x_t, t), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        for group in opt.param_groups:
            group["lr"] = lr * (1 - (step + 1) / steps)
    return clf.eval()
