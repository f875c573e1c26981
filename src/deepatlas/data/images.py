"""Fashion-MNIST images for the generative models: pixels in [-1, 1], full 28×28 or downsampled.

Diffusion and GANs model pixels in [-1, 1] (Ho et al. 2020 §4: "data scaled linearly to
[−1, 1]"), unlike the classifiers' mean/std normalisation (data.fashion_mnist). 14×14 is a 2×2
average of 28×28 (area downsampling), which keeps the 2-core training times to minutes."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from deepatlas.data.fashion_mnist import load_fashion_mnist

SIZES = (28, 14, 7)


@lru_cache(maxsize=4)
def _images(split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_fashion_mnist(split)
    x = images.float().unsqueeze(1) / 127.5 - 1.0                      # (N, 1, 28, 28) in [-1, 1]
    if size != 28:
        x = F.avg_pool2d(x, 28 // size)                                 # (N, 1, size, size)
    return x, labels.long()


def fashion_images(split: str = "train", size: int = 14, n: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 1, size, size) float32 in [-1, 1], labels (N,) int64); the first n if given."""
    if size not in SIZES:
        raise ValueError(f"image size {size}; valid: {', '.join(map(str, SIZES))}")
    x, y = _images(split, size)
    return (x, y) if n is None else (x[:n], y[:n])


def digit_images(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits as (N, 1, 8, 8) in [-1, 1] with labels (the quickest tests)."""
    from deepatlas.data.digits import load_digits_tensors

    if split not in ("train", "test"):
        raise ValueError(f"split {split!r}; valid: 'train', 'test'")
    x_tr, y_tr, x_te, y_te = load_digits_tensors()
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    return x.reshape(-1, 1, 8, 8) * 2 - 1, y


DATASETS = ("fashion", "digits")


def generative_images(data: str, split: str = "train", size: int = 14) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST at `size`, or the 8×8 digits (size must then be 8)."""
    if data == "fashion":
        return fashion_images(split, size)
    if data == "digits":
        if size != 8:
            raise ValueError(f"the digits are 8×8; got size {size}")
        return digit_images(split)
    raise ValueError(f"image data {data!r}; valid: {', '.join(DATASETS)}")


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] pixels -> [0, 1] for plotting."""
    return ((x + 1) / 2).clamp(0, 1)


def image_grid(x: torch.Tensor, nrow: int, pad: int = 1) -> torch.Tensor:
    """(N, 1, H, W) images in [-1, 1] -> one (rows·(H+pad), nrow·(W+pad)) array in [0, 1] for imshow;
    (N, 3, H, W) colour images -> (rows·(H+pad), nrow·(W+pad), 3)."""
    n, c, h, w = x.shape
    rows = -(-n // nrow)
    out = torch.ones(rows * (h + pad), nrow * (w + pad), *((3,) if c == 3 else ()))
    for i in range(n):
        r, col = divmod(i, nrow)
        tile = to_unit(x[i].detach().cpu())
        out[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = (
            tile.permute(1, 2, 0) if c == 3 else tile[0])
    return out
