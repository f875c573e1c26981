"""SR3-style super-resolution (Saharia et al. 2021): a diffusion model of the high-resolution image
conditioned on the low-resolution one.

The low-resolution input is upsampled to the target size (bicubic, as SR3 §2.2 does) and
concatenated with x_t along the channels, so the U-Net (models/unet.py with in_channels = 2)
reads (B, 2, H, W) and predicts ε of the 1-channel x_t:
    L = E ‖ε − f_θ([x_t, up(x_low)], t)‖²,  x_t = √ᾱ_t x_high + √(1−ᾱ_t) ε      (SR3 eq. 6, L_simple)
Sampling runs the ordinary reverse chain (diffusion/sampling.py) with that conditioning fixed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.diffusion.sampling import Denoiser, sample
from deepatlas.diffusion.schedule import NoiseSchedule
from deepatlas.models.unet import UNet, UNetConfig


def upsample(low: Tensor, size: int) -> Tensor:
    """(B, C, h, w) -> (B, C, size, size), bicubic, clamped to the pixel range [-1, 1]."""
    return F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def downsample(high: Tensor, factor: int = 2) -> Tensor:
    """The low-resolution view the model is conditioned on: factor×factor area average."""
    return F.avg_pool2d(high, factor)


def sr3_unet(channels: tuple[int, ...] = (16, 32), attention: tuple[bool, ...] = (False, True),
             head_dim: int = 8) -> UNet:
    """A U-Net reading [x_t, up(x_low)] (2 channels) and predicting ε (1 channel)."""
    return UNet(UNetConfig(in_channels=2, out_channels=1, channels=channels, attention=attention, head_dim=head_dim,
                           groups=min(8, channels[0])))


def sr3_denoiser(model: nn.Module, low: Tensor, size: int) -> Denoiser:
    cond = upsample(low, size)                                                     # (B, 1, size, size)
    return lambda x, t: model(torch.cat([x, cond], dim=1), t)


def sr3_loss(model: nn.Module, schedule: NoiseSchedule, high: Tensor, factor: int = 2) -> Tensor:
    """L_simple of SR3 for a batch of high-resolution images (B, 1, H, W)."""
    cond = upsample(downsample(high, factor), high.shape[-1])
    t = torch.randint(0, schedule.T, (high.shape[0],), device=high.device)
    noise = torch.randn_like(high)
    x_t = schedule.add_noise(high, noise, t)
    return F.mse_loss(model(torch.cat([x_t, cond], dim=1), t), noise)


def train_sr3(model: nn.Module, schedule: NoiseSchedule, images: Tensor, steps: int, batch: int = 32,
              lr: float = 2e-3, factor: int = 2, seed: int = 0) -> list[float]:
    """Adam with linear decay on random batches of `images`; returns the losses."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for step in range(steps):
        loss = sr3_loss(model, schedule, images[torch.randint(0, len(images), (batch,), generator=g)], factor)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        for group in opt.param_groups:
            group["lr"] = lr * (1 - (step + 1) / steps)
        losses.append(loss.item())
    model.eval()
    return losses


def super_resolve(model: nn.Module, schedule: NoiseSchedule, low: Tensor, size: int, sampler: str = "ddpm",
                  steps: int | None = 100, generator: torch.Generator | None = None) -> Tensor:
    """(B, 1, h, w) low-resolution images -> (B, 1, size, size) samples of p(x_high | x_low)."""
    x, _ = sample(sr3_denoiser(model, low, size), schedule, (low.shape[0], 1, size, size), sampler, steps,
                  generator=generator)
    return x
