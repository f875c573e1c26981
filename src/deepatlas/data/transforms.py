"""Image transforms as plain tensor code, batched: (B, C, H, W) float tensors in, the same out.

No torchvision here (it breaks `import transformers` in this environment), and these are a few
lines each: normalise, random crop with zero padding, horizontal flip, bilinear resize.
Random transforms take a torch.Generator so a batch is a deterministic function of its seed
(the trainer's exact resume needs get_batch(step) to be reproducible).

    augment = Compose([RandomCrop(28, padding=2), RandomHorizontalFlip()])
    x = augment(x, generator=torch.Generator().manual_seed(step))
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_images(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} expects images (B, C, H, W), got {shape}")


def normalize(x: Tensor, mean: float | Sequence[float], std: float | Sequence[float]) -> Tensor:
    """(x − mean) / std per channel; mean and std are one number or one per channel."""
    _check_images(x, "normalize")
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)   # (C or 1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
    if mean_t.numel() not in (1, x.size(1)) or std_t.numel() not in (1, x.size(1)):
        raise ValueError(f"normalize: mean/std have {mean_t.numel()}/{std_t.numel()} values for "
                         f"{x.size(1)} channels; give 1 or {x.size(1)}")
    if (std_t <= 0).any():
        raise ValueError(f"normalize: std must be > 0, got {std}")
    return (x - mean_t) / std_t


def random_crop(x: Tensor, size: int | tuple[int, int], padding: int = 0,
                generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad each side by `padding`, then cut a (h, w) window at an independent random offset
    per image (the CIFAR/ResNet augmentation of He et al. 2016 §4.2, 4-pixel padding there)."""
    _check_images(x, "random_crop")
    h, w = (size, size) if isinstance(size, int) else size
    B, C, H, W = x.shape
    Hp, Wp = H + 2 * padding, W + 2 * padding
    if not (0 < h <= Hp and 0 < w <= Wp) or padding < 0:
        raise ValueError(f"random_crop: size {(h, w)} must fit the padded image {(Hp, Wp)} (padding {padding} ≥ 0)")
    padded = torch.nn.functional.pad(x, (padding,) * 4) if padding else x        # (B, C, Hp, Wp)
    top = torch.randint(0, Hp - h + 1, (B,), generator=generator)
    left = torch.randint(0, Wp - w + 1, (B,), generator=generator)
    rows = (top[:, None] + torch.arange(h))[:, :, None]                         # (B, h, 1)
    cols = (left[:, None] + torch.arange(w))[:, None, :]                        # (B, 1, w)
    batch = torch.arange(B)[:, None, None]                                      # (B, 1, 1)
    # advanced indexing on dims 0, 2, 3 puts them first: (B, h, w, C) -> (B, C, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_hflip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability p."""
    _check_images(x, "random_hflip")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_hflip: p must be in [0, 1], got {p}")
    flip = torch.rand(x.size(0), generator=generator) < p                       # (B,)
    return torch.where(flip[:, None, None, None].to(x.device), x.flip(-1), x)


def gaussian_blur(x: Tensor, sigma: float | Tensor, radius: int | None = None) -> Tensor:
    """Separable Gaussian blur with edge replication: G_σ(k) = exp(−k² / 2σ²) / Σ_k exp(−k² / 2σ²),
    k = −r..r, r = ⌈3 max σ⌉ over the batch unless given (scipy.ndimage.gaussian_filter(mode="nearest",
    radius=r)). sigma is one value or one per image (B,); σ = 0 leaves an image as it is."""
    _check_images(x, "gaussian_blur")
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if s.numel() not in (1, x.size(0)) or bool((s < 0).any()):
        raise ValueError(f"gaussian_blur: sigma must be ≥ 0, one value or one per image ({x.size(0)}), "
                         f"got {s.tolist()}")
    s = s.expand(x.size(0))
    r = int(torch.ceil(3 * s.max()).item()) if radius is None else radius
    if r == 0:
        return x
    k = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)                 # (K,)
    g = torch.exp(-k ** 2 / (2 * s.clamp(min=1e-6)[:, None] ** 2))               # (B, K)
    g = torch.where(s[:, None] > 0, g, (k == 0).to(x.dtype))                     # σ = 0: the identity
    g = g / g.sum(1, keepdim=True)
    y = F.pad(x, (r, r, r, r), mode="replicate")                                 # (B, C, H+2r, W+2r)
    # rows then columns: a weighted sum of the 2r+1 shifted copies along each axis
    y = sum(g[:, i, None, None, None] * y[..., i:i + x.size(-2), :] for i in range(2 * r + 1))
    return sum(g[:, i, None, None, None] * y[..., i:i + x.size(-1)] for i in range(2 * r + 1))


def _source_coords(n_out: int, n_in: int) -> tuple[Tensor, Tensor, Tensor]:
    """For each output index: the two input neighbours and the weight of the upper one.

    align_corners=False (pixel centres): source = (i + ½) · n_in / n_out − ½, clamped at 0."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0.0)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    return lo, hi, (src - lo).float()


def resize(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear resize to (h, w) with pixel-centre alignment (F.interpolate(mode="bilinear",
    align_corners=False), no antialiasing): each output pixel mixes its 4 nearest input pixels,
        y = (1−a)(1−b)·x[r0,c0] + (1−a)b·x[r0,c1] + a(1−b)·x[r1,c0] + ab·x[r1,c1]."""
    _check_images(x, "resize")
    h, w = (size, size) if isinstance(size, int) else size
    if h <= 0 or w <= 0:
        raise ValueError(f"resize: size must be positive, got {(h, w)}")
    r0, r1, a = _source_coords(h, x.size(-2))
    c0, c1, b = _source_coords(w, x.size(-1))
    a, b = a.to(x)[:, None], b.to(x)[None, :]                                   # (h, 1), (1, w)
    top = x[..., r0, :] * (1 - a) + x[..., r1, :] * a                           # (B, C, h, W)
    return top[..., c0] * (1 - b) + top[..., c1] * b                            # (B, C, h, w)


class RandomCrop:
    def __init__(self, size: int | tuple[int, int], padding: int = 0):
        self.size, self.padding = size, padding

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return random_crop(x, self.size, self.padding, generator)


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return random_hflip(x, self.p, generator)


class Compose:
    """Apply transforms in order; random ones share the one generator."""

    def __init__(self, transforms: Sequence[Callable[..., Tensor]]):
        self.transforms = list(transforms)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for t in self.transforms:
            x = t(x, generator=generator) if isinstance(t, (RandomCrop, RandomHorizontalFlip)) else t(x)
        return x
