"""The deletion metric (Petsiuk, Das & Saenko 2018, "RISE", §4.1).

Delete (set to the background value) the pixels in the order a saliency map ranks them, most
important first, and track the probability of the explained class. A map that finds the evidence
makes the probability fall fast: a small area under the deletion curve (AUC). A random order is
the baseline every explanation must beat.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def deletion_curve(model: nn.Module, x: Tensor, maps: Tensor, target: Tensor, steps: int = 20,
                   background: float | None = None) -> Tensor:
    """Probabilities (B, steps+1) of class `target` after deleting 0, 1/steps, …, all of the pixels,
    highest-ranked first. x (B, C, H, W), maps (B, H, W)."""
    was = model.training
    model.eval()
    B, C, H, W = x.shape
    fill = x.amin() if background is None else torch.tensor(background)
    order = maps.flatten(1).argsort(dim=1, descending=True)                 # (B, H·W) most important first
    probs = []
    for s in range(steps + 1):
        n = round(s * H * W / steps)
        keep = torch.ones(B, H * W, dtype=torch.bool)
        keep.scatter_(1, order[:, :n], False)                                 # delete the top n pixels
        xs = torch.where(keep.view(B, 1, H, W), x, fill.to(x))
        probs.append(model(xs).softmax(-1).gather(1, target.view(-1, 1))[:, 0])
    model.train(was)
    return torch.stack(probs, dim=1)                                          # (B, steps+1)


def area_under(curve: Tensor) -> Tensor:
    """Trapezoid area of each curve over deletion fractions 0..1 -> (B,)."""
    return torch.trapezoid(curve, dx=1.0 / (curve.size(1) - 1), dim=1)


def random_maps(shape: tuple[int, ...], seed: int = 0) -> Tensor:
    """Uniform random 'maps': a random deletion order."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))
