"""Attention rollout (Abnar & Zuidema 2020, "Quantifying attention flow in transformers", §3).

Attention alone ignores the residual path, so each layer's head-averaged attention A_l is mixed with
the identity and renormalised, then the layers are composed:
    Ã_l = (A_l + I) / 2  (rows sum to 1)          R = Ã_L · Ã_{L−1} ⋯ Ã_1
R[0, 1:] — how much each patch flowed into the class token — reshaped to the patch grid is the map.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from deepatlas.data.transforms import resize
from deepatlas.explain.gradcam import normalise


def rollout(maps: list[Tensor], residual: float = 0.5) -> Tensor:
    """maps: per layer (B, heads, T, T) attention -> R (B, T, T)."""
    if not maps:
        raise ValueError("attention rollout needs at least one layer's attention maps")
    B, _, T, _ = maps[0].shape
    eye = torch.eye(T, dtype=maps[0].dtype, device=maps[0].device)
    R = eye.expand(B, T, T)
    for A in maps:
        A = residual * A.mean(dim=1) + (1 - residual) * eye                  # Ã_l, heads averaged
        A = A / A.sum(dim=-1, keepdim=True)                                   # rows sum to 1
        R = A @ R                                                             # Ã_l · (Ã_{l−1} ⋯ Ã_1)
    return R


def attention_rollout(model: nn.Module, x: Tensor, residual: float = 0.5) -> Tensor:
    """Maps (B, H, W) in [0, 1] for a model whose forward(x, return_attention=True) gives (logits, maps)
    and whose `grid` is the patch grid (deepatlas.models.vit.ViT)."""
    if not hasattr(model, "grid"):
        raise ValueError(f"attention rollout needs a ViT (a model with attention maps and a patch grid), "
                         f"not {type(model).__name__}")
    was = model.training
    model.eval()
    with torch.no_grad():
        _, maps = model(x, return_attention=True)
    model.train(was)
    R = rollout(maps, residual)
    cls_to_patches = R[:, 0, 1:].reshape(-1, 1, *model.grid)                 # (B, 1, gh, gw)
    return normalise(resize(cls_to_patches, tuple(x.shape[-2:]))[:, 0])
