"""Pruning (map place T6): global magnitude pruning, and structured pruning of heads and MLP units.

Unstructured, global (Han et al. 2015, "Learning both Weights and Connections"): over all the
chosen weight matrices together, zero the fraction s with the smallest |w|:
    τ = the s-quantile of {|w|},   mask = |w| > τ,   w ← w ⊙ mask      (kept zero while fine-tuning)
It shrinks the count of non-zero weights, not the dense matmuls: on a CPU it saves no time
without a sparse kernel. Structured pruning removes whole rows and columns, so the layers get
smaller and faster:
  * MLP units: unit j of FFN(x) = W₂ act(W₁ x + b₁) + b₂ matters by ‖W₁[j, :]‖ · ‖W₂[:, j]‖; keep the top k
  * attention heads (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"): head h's
    output goes through the columns W_o[:, h·d:(h+1)·d]; keep the k heads with the largest ‖·‖ of
    those columns, cutting their rows of W_q, W_k, W_v (self-attention with n_kv_head = n_head).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from deepatlas.nn.attention import MultiHeadAttention
from deepatlas.nn.ffn import FeedForward


def prunable_weights(model: nn.Module, skip: Iterable[str] = ("head", "lm_head", "classifier")) -> dict[str, Tensor]:
    """name -> weight of every nn.Linear except the output head (its rows are the classes)."""
    skip = tuple(skip)
    return {f"{n}.weight": m.weight for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and not any(n == s or n.endswith("." + s) for s in skip)}


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float, weights: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Zero the `sparsity` fraction of smallest-|w| entries over all `weights` together (global).
    -> masks (name -> bool tensor, True = kept); reapply them with apply_masks after each update."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    weights = prunable_weights(model) if weights is None else weights
    if not weights:
        raise ValueError("no weights to prune")
    scores = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    k = int(round(sparsity * scores.numel()))                                   # how many to zero
    masks = {}
    if k == 0:
        return {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    # τ: the k-th smallest |w|; ties at τ broken by order so exactly k are zeroed
    order = scores.argsort(stable=True)
    keep_flat = torch.ones_like(scores, dtype=torch.bool)
    keep_flat[order[:k]] = False
    start = 0
    for name, w in weights.items():
        masks[name] = keep_flat[start:start + w.numel()].view_as(w)
        start += w.numel()
        w.mul_(masks[name])
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask)


def sparsity(weights: Iterable[Tensor]) -> float:
    """Fraction of exact zeros."""
    weights = list(weights)
    return sum(int((w == 0).sum()) for w in weights) / max(1, sum(w.numel() for w in weights))


def _rows(linear: nn.Linear, idx: Tensor) -> nn.Linear:
    new = nn.Linear(linear.in_features, len(idx), bias=linear.bias is not None)
    new.weight.data.copy_(linear.weight.data[idx])
    if linear.bias is not None:
        new.bias.data.copy_(linear.bias.data[idx])
    return new


def _cols(linear: nn.Linear, idx: Tensor) -> nn.Linear:
    new = nn.Linear(len(idx), linear.out_features, bias=linear.bias is not None)
    new.weight.data.copy_(linear.weight.data[:, idx])
    if linear.bias is not None:
        new.bias.data.copy_(linear.bias.data)
    return new


@torch.no_grad()
def prune_mlp_units(ffn: FeedForward, keep: int) -> Tensor:
    """Keep the `keep` hidden units of largest ‖W₁[j]‖·‖W₂[:, j]‖ (in place). -> kept unit indices."""
    d_ff = ffn.up_proj.out_features
    if not 1 <= keep <= d_ff:
        raise ValueError(f"keep {keep} units of {d_ff}")
    score = ffn.up_proj.weight.norm(dim=1) * ffn.down_proj.weight.norm(dim=0)   # (d_ff,)
    if ffn.gate_proj is not None:
        score = score * ffn.gate_proj.weight.norm(dim=1)
    idx = score.topk(keep).indices.sort().values
    ffn.up_proj, ffn.down_proj = _rows(ffn.up_proj, idx), _cols(ffn.down_proj, idx)
    if ffn.gate_proj is not None:
        ffn.gate_proj = _rows(ffn.gate_proj, idx)
    return idx


@torch.no_grad()
def prune_heads(attn: MultiHeadAttention, keep: int) -> Tensor:
    """Keep the `keep` heads whose W_o columns have the largest norm (in place). -> kept heads."""
    if attn.n_kv_head != attn.n_head:
        raise ValueError("head pruning here needs n_kv_head == n_head (no grouped-query sharing)")
    if not 1 <= keep <= attn.n_head:
        raise ValueError(f"keep {keep} heads of {attn.n_head}")
    d = attn.head_dim
    score = attn.o_proj.weight.view(attn.o_proj.out_features, attn.n_head, d).norm(dim=(0, 2))  # (n_head,)
    heads = score.topk(keep).indices.sort().values
    idx = (heads[:, None] * d + torch.arange(d)).reshape(-1)                   # the heads' rows / columns
    attn.q_proj, attn.k_proj, attn.v_proj = (_rows(p, idx) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    attn.o_proj = _cols(attn.o_proj, idx)
    attn.n_head = attn.n_kv_head = keep
    return heads
