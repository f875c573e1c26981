"""Attention masks, in F.scaled_dot_product_attention's convention.

A mask is either bool (True = the query may attend to this key) or float (added to the scores;
-inf blocks). Shapes broadcast to the scores (B, H, T, S).
"""
from __future__ import annotations

import torch
from torch import Tensor


def causal_mask(T: int, S: int | None = None, device: str | torch.device = "cpu") -> Tensor:
    """(T, S) bool: query i (absolute position S - T + i) may see key j iff j ≤ S - T + i.

    T == S is the usual lower triangle; T < S is T new queries after S - T cached positions.
    """
    S = T if S is None else S
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T)


def padding_to_keep(key_padding_mask: Tensor) -> Tensor:
    """(B, S) bool, True = padding (torch.nn's convention) -> (B, 1, 1, S) bool, True = attend."""
    if key_padding_mask.dtype != torch.bool:
        raise TypeError(f"key_padding_mask must be bool (True = pad), got {key_padding_mask.dtype}")
    return ~key_padding_mask[:, None, None, :]


def to_additive(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """bool keep-mask -> float mask with 0 where kept and -inf where blocked; float passes through."""
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))


def merge_masks(a: Tensor | None, b: Tensor | None, dtype: torch.dtype = torch.float32) -> Tensor | None:
    """Both masks at once: bool & bool stays bool; otherwise the additive sum."""
    if a is None or b is None:
        return b if a is None else a
    if a.dtype == torch.bool and b.dtype == torch.bool:
        return a & b
    return to_additive(a, dtype) + to_additive(b, dtype)
