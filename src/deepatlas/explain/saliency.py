"""Gradient saliency maps.

Vanilla gradient (Simonyan, Vedaldi & Zisserman 2014, §3.1):  M_ij = max_c |∂y^c/∂x_{c,ij}|  over the
channels c, for the class score y^c (before the softmax).
SmoothGrad (Smilkov et al. 2017, eq. 3):  M̂ = (1/n) Σ_{i=1..n} M(x + N(0, σ²)), with σ = noise·(max x − min x)
(they recommend 10–20%): averaging over nearby inputs removes the gradient's high-frequency noise.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from deepatlas.explain.gradcam import normalise


def _input_gradient(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        logits.gather(1, target.view(-1, 1)).sum().backward()
    return x.grad                                                            # (B, C, H, W)


def saliency(model: nn.Module, x: Tensor, target: Tensor | int | None = None, smooth: int = 0,
             noise: float = 0.15, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(maps (B, H, W) in [0, 1], targets). smooth=n > 0 averages n noisy copies (SmoothGrad)."""
    was = model.training
    model.eval()
    try:
        if target is None:
            with torch.no_grad():
                target = model(x).argmax(-1)
        target = torch.as_tensor(target)
        target = target.expand(len(x)) if target.dim() == 0 else target
        if smooth <= 0:
            grad = _input_gradient(model, x, target).abs()
        else:
            g = torch.Generator().manual_seed(seed)
            sigma = noise * (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True))
            # eq. (3): the mean of the saliency maps of n noisy copies
            grad = sum(_input_gradient(model, x + sigma * torch.randn(x.shape, generator=g), target).abs()
                       for _ in range(smooth)) / smooth
    finally:
        model.train(was)
    return normalise(grad.amax(dim=1)), target                               # max over channels (B, H, W)
