"""Full-reference image quality: how close a translated image is to its true target.

PSNR = 10 log₁₀(R² / MSE), R the data range (2 for pixels in [−1, 1]).
SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, eq. 13), per local Gaussian window of std σ and
width 2·⌊3.5σ + 0.5⌋ + 1 (torchmetrics' choice; σ = 1.5 -> 11 px, the paper's; σ = 0.8 -> 7 px,
the default here, for 14×14 images):
    SSIM(x, y) = (2 μ_x μ_y + C₁)(2 σ_xy + C₂) / ((μ_x² + μ_y² + C₁)(σ_x² + σ_y² + C₂)),
    C₁ = (0.01 R)², C₂ = (0.03 R)²,
averaged over every pixel, the image reflect-padded by half a window (as torchmetrics does; equal
to it, tests/metrics/test_image_quality.py). Sharpness: the mean gradient magnitude (finite differences),
which a blurry L1-trained output lacks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(pred: Tensor, target: Tensor, data_range: float = 2.0) -> Tensor:
    """PSNR in dB per image (B,) of (B, C, H, W) tensors."""
    mse = (pred - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse.clamp_min(1e-12))


def gaussian_window(size: int, sigma: float) -> Tensor:
    """(size, size) Gaussian summing to 1."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-r.pow(2) / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(pred: Tensor, target: Tensor, data_range: float = 2.0, sigma: float = 0.8) -> Tensor:
    """Mean SSIM per image (B,) over all pixels (reflect padding); pred, target (B, C, H, W)."""
    window = 2 * int(3.5 * sigma + 0.5) + 1
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if min(pred.shape[-2:]) <= window // 2:
        raise ValueError(f"SSIM window {window} (σ={sigma}) larger than the {tuple(pred.shape[-2:])} images")
    C = pred.shape[1]
    k = gaussian_window(window, sigma).to(pred)[None, None].repeat(C, 1, 1, 1)   # (C, 1, w, w)
    pad = window // 2
    pred, target = (F.pad(t, (pad,) * 4, mode="reflect") for t in (pred, target))
    blur = lambda t: F.conv2d(t, k, groups=C)                                       # local means (B, C, H, W)
    mu_x, mu_y = blur(pred), blur(target)
    s_xx = (blur(pred * pred) - mu_x ** 2).clamp_min(0)
    s_yy = (blur(target * target) - mu_y ** 2).clamp_min(0)
    s_xy = blur(pred * target) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (s_xx + s_yy + c2))
    return s.flatten(1).mean(1)


def sharpness(x: Tensor) -> Tensor:
    """Mean finite-difference gradient magnitude per image (B,) — high-frequency content."""
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    return torch.sqrt(dx[..., :-1, :] ** 2 + dy[..., :, :-1] ** 2 + 1e-12).flatten(1).mean(1)


def translation_scores(pred: Tensor, target: Tensor) -> dict[str, float]:
    """Mean L1, PSNR (dB) and SSIM of predictions against their true targets, both in [−1, 1]."""
    pred = pred.clamp(-1, 1)
    return {"l1": float((pred - target).abs().mean()), "psnr": float(psnr(pred, target).mean()),
            "ssim": float(ssim(pred, target).mean())}

