"""Pix2Pix (Isola, Zhu, Zhou & Efros 2017): paired image-to-image translation with a conditional GAN.

Objective (eq. 4):  G* = arg min_G max_D  L_cGAN(G, D) + λ L_L1(G),  λ = 100, with
    L_cGAN = E_{x,y} log D(x, y) + E_x log(1 − D(x, G(x)))          (eq. 1; G's side non-saturating)
    L_L1   = E_{x,y} ‖y − G(x)‖₁                                     (eq. 3)
L1 alone recovers the low frequencies and blurs (the conditional median); the discriminator
penalises structure only at the scale of its patches (§3.2.2, "PatchGAN"): it scores every
N×N patch as real or fake — a conv net whose every output sees N×N input pixels, N its
receptive field (computed by nn.conv.receptive_field; the paper's 70×70 discriminator is
C64-C128-C256-C512 with 4×4 kernels, strides 2, 2, 2, 1, then a stride-1 4×4 conv to 1 channel).
D sees the input and output together (channels concatenated): it judges the pair.
Generator: the U-Net of models/unet.py (encoder-decoder with skip connections, §3.2.1), its time
input fixed at 0, with tanh on the output. Paired data here: Sobel edge maps of Fashion-MNIST ->
the images (deterministic, sketches -> photos in miniature).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.gan import discriminator_loss, generator_loss
from deepatlas.models.unet import UNet, UNetConfig
from deepatlas.nn.conv import Layer, receptive_field

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edge_map(x: Tensor) -> Tensor:
    """Images (B, 1, H, W) in [−1, 1] -> Sobel gradient magnitude (B, 1, H, W), scaled per image to [−1, 1]."""
    k = torch.stack([SOBEL_X, SOBEL_X.T])[:, None].to(x)                        # (2, 1, 3, 3)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)                   # (B, 2, H, W)
    mag = g.pow(2).sum(1, keepdim=True).sqrt()
    mag = mag / mag.flatten(1).amax(1).clamp_min(1e-6)[:, None, None, None]     # [0, 1]
    return mag * 2 - 1


class UNetTranslator(nn.Module):
    """x (B, c_in, H, W) -> tanh(U-Net(x, t = 0)) (B, c_out, H, W): models/unet.py as an image-to-image net."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, channels: tuple[int, ...] = (32, 64),
                 groups: int = 8):
        super().__init__()
        self.unet = UNet(UNetConfig(in_channels=in_channels, out_channels=out_channels, channels=channels,
                                    attention=(False,) * len(channels), layers=1, groups=groups))

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.unet(x, 0))


class PatchDiscriminator(nn.Module):
    """x (B, in_channels, H, W) -> patch logits (B, 1, H', W'): convs (kernels[i], strides[i], padding 1, 0 for
    1×1) to widths[i] with LeakyReLU(0.2) between (none after the last, whose width is 1). The default
    sees 8×8 patches of a 14×14 image and gives 7×7 logits."""

    def __init__(self, in_channels: int = 2, widths: tuple[int, ...] = (32, 64, 1), kernels: tuple[int, ...] = (4, 3, 1),
                 strides: tuple[int, ...] = (2, 1, 1)):
        super().__init__()
        if not (len(widths) == len(kernels) == len(strides)) or widths[-1] != 1:
            raise ValueError(f"widths {widths}, kernels {kernels}, strides {strides}: one of each per layer, "
                             f"the last width 1")
        self.specs = [Layer(k, s, 1 if k > 1 else 0) for k, s in zip(kernels, strides)]
        layers: list[nn.Module] = []
        c = in_channels
        for i, (w, k, s) in enumerate(zip(widths, kernels, strides)):
            layers.append(nn.Conv2d(c, w, k, s, 1 if k > 1 else 0))
            if i < len(widths) - 1:
                layers.append(nn.LeakyReLU(0.2))
            c = w
        self.net = nn.Sequential(*layers)

    @classmethod
    def paper_70(cls, in_channels: int = 6) -> "PatchDiscriminator":
        """Isola et al.'s 70×70 PatchGAN (App. 6.1.2; without its batch norm)."""
        return cls(in_channels, (64, 128, 256, 512, 1), (4, 4, 4, 4, 4), (2, 2, 2, 1, 1))

    @property
    def receptive_field(self) -> int:
        """N: the side of the input patch each output logit sees (r_l = r_{l−1} + (k_l − 1) j_{l−1})."""
        return int(receptive_field(self.specs)[-1]["receptive_field"])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def train_pix2pix(gen: nn.Module, disc: PatchDiscriminator | None, source: Tensor, target: Tensor, steps: int,
                  batch: int = 32, lr: float = 2e-4, l1_weight: float = 100.0, seed: int = 0,
                  log: Callable[[int, float, float], None] | None = None, log_every: int = 50) -> None:
    """Adam (β₁ = 0.5) on λ L1 + the non-saturating cGAN loss on (source, output) pairs; disc None: L1 only.
    log(step, L1, D loss or nan)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999)) if disc is not None else None
    for step in range(steps):
        idx = torch.randint(0, len(source), (batch,), generator=g)
        x, y = source[idx], target[idx]
        fake = gen(x)
        d_loss = torch.tensor(float("nan"))
        if disc is not None:
            # D: real pairs (x, y) vs fake pairs (x, G(x)), every patch a BCE term
            d_loss = discriminator_loss(disc(torch.cat([x, y], 1)), disc(torch.cat([x, fake.detach()], 1)))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        l1 = (fake - y).abs().mean()
        loss = l1_weight * l1
        if disc is not None:
            loss = loss + generator_loss(disc(torch.cat([x, fake], 1)))
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        if log is not None and (step % log_every == 0 or step == steps - 1):
            log(step, float(l1.detach()), float(d_loss.detach()))
