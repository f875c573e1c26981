"""Heat maps over images, as matplotlib figures and PNG files."""
from __future__ import annotations

from pathlib import Path

from torch import Tensor


def overlay_png(image: Tensor, heat: Tensor, path: Path, title: str = "") -> Path:
    """image (C, H, W) or (H, W), heat (H, W) in [0, 1] -> a PNG of the image and the overlaid map."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = (image[0] if image.dim() == 3 else image).detach().cpu().numpy()
    heat = heat.detach().cpu().numpy()
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    axes[0].imshow(img, cmap="gray")
    axes[1].imshow(img, cmap="gray")
    axes[1].imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
