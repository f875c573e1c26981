"""Swin Transformer (Liu et al. 2021, "Hierarchical vision transformer using shifted windows"), place V2.

Self-attention inside non-overlapping M×M windows costs O(M²·HW) instead of O((HW)²) (eq. 1–2).
Consecutive blocks alternate regular and shifted windows (eq. 3):
    ẑ_l   = W-MSA(LN(z_{l−1})) + z_{l−1}          z_l   = MLP(LN(ẑ_l)) + ẑ_l
    ẑ_l+1 = SW-MSA(LN(z_l)) + z_l                 z_l+1 = MLP(LN(ẑ_l+1)) + ẑ_l+1
The shift is a cyclic roll by ⌊M/2⌋ (§3.2 "efficient batch computation"): windows then mix pixels
from opposite image borders, and a mask (−100 added to the score, as the authors' code) stops them
attending across those seams.
Attention with a relative position bias (eq. 4):  softmax(Q Kᵀ/√d + B) V,  B = B̂[index], where the
table B̂ has (2M−1)² entries per head, one per relative offset (Δrow, Δcol) ∈ [−M+1, M−1]².
Patch merging concatenates each 2×2 neighbourhood (4C channels), normalises it and maps it to 2C:
resolution halves, width doubles — a hierarchy of feature maps like a CNN's (reused by V4/V5).

Padding follows HF/official Swin: the tokens are zero-padded to a multiple of M after the norm
(no mask over the padding), odd maps padded before a merge. Equal to HF SwinModel with copied
weights (tests/models/test_swin.py).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.nn.attention import MultiHeadAttention
from deepatlas.nn.conv import Conv2d
from deepatlas.nn.ffn import FeedForward
from deepatlas.nn.norms import LayerNorm

SHIFT_MASK_VALUE = -100.0   # the official code's "−∞": exp(−100) ≈ 4e−44, exact enough and NaN-free


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) with H, W multiples of `window` -> (B·nW, M·M, C), windows in row-major order."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)               # (B, H/M, M, W/M, M, C)
    return x.transpose(2, 3).reshape(-1, window * window, C)                   # (B·nW, M², C)


def window_reverse(windows: Tensor, window: int, H: int, W: int) -> Tensor:
    """(B·nW, M·M, C) -> (B, H, W, C), the inverse of window_partition."""
    C = windows.size(-1)
    x = windows.view(-1, H // window, W // window, window, window, C)        # (B, H/M, W/M, M, M, C)
    return x.transpose(2, 3).reshape(-1, H, W, C)


def relative_position_index(window: int, table_window: int | None = None) -> Tensor:
    """(M², M²) index into the (2M̂−1)² bias table: pair (i, j) of window positions -> its offset.

    offset (Δr, Δc) = pos_i − pos_j, each in [−M+1, M−1]; index = (Δr + M̂−1)(2M̂−1) + (Δc + M̂−1).
    table_window M̂ ≥ M lets a window clamped to a small map use the table built for M̂."""
    T = table_window or window
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])                    # (2, M²)
    rel = coords[:, :, None] - coords[:, None, :]                              # (2, M², M²)
    return (rel[0] + T - 1) * (2 * T - 1) + (rel[1] + T - 1)


def shift_mask(H: int, W: int, window: int, shift: int) -> Tensor:
    """(nW, M², M²) additive mask for shifted windows: 0 within a region, −100 across regions.

    After rolling by −shift, each axis has 3 regions, [0, H−M), [H−M, H−s), [H−s, H): the last
    window along an axis holds pixels from both image borders; they must not see each other."""
    def regions(n: int) -> Tensor:
        i = torch.arange(n)
        return (i >= n - window).long() + (i >= n - shift).long()              # 0, 1, 2
    label = (regions(H)[:, None] * 3 + regions(W)[None, :]).float()           # (H, W) region id
    ids = window_partition(label[None, :, :, None], window).squeeze(-1)        # (nW, M²)
    same = ids[:, :, None] == ids[:, None, :]                                  # (nW, M², M²)
    return torch.zeros(same.shape).masked_fill(~same, SHIFT_MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention in each window with the relative position bias (eq. 4)."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.window, self.heads = window, heads
        self.attn = MultiHeadAttention(dim, heads)                             # W_q, W_k, W_v, W_o
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))  # B̂
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def bias(self, window: int) -> Tensor:
        """B = B̂[index] for an M×M window -> (heads, M², M²)."""
        index = relative_position_index(window, self.window).to(self.relative_position_bias_table.device)
        return self.relative_position_bias_table[index.flatten()].view(window ** 2, window ** 2, -1).permute(2, 0, 1)

    def forward(self, windows: Tensor, window: int, mask: Tensor | None = None) -> Tensor:
        """windows (B·nW, M², C); mask (nW, M², M²) or None -> (B·nW, M², C)."""
        bias = self.bias(window)[None]                                         # (1, nh, M², M²)
        if mask is not None:
            nW, N = mask.size(0), mask.size(-1)
            # B + mask per window, repeated over the batch                      (B·nW, nh, M², M²)
            bias = (bias[:, None] + mask[None, :, None].to(bias)).expand(windows.size(0) // nW, -1, -1, -1, -1)
            bias = bias.reshape(-1, self.heads, N, N)
        return self.attn(windows, mask=bias)


class SwinBlock(nn.Module):
    """eq. (3): (shifted-)window attention and an MLP, each pre-norm with a residual."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float = 4.0, eps: float = 1e-5):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = LayerNorm(dim, eps=eps)
        self.ffn = FeedForward(dim, int(mlp_ratio * dim), "gelu")

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        """x (B, H·W, C) -> (B, H·W, C)."""
        B, L, C = x.shape
        window, shift = self.window, self.shift
        if min(H, W) <= window:     # the map fits in one window: no shift, window = the map (as HF)
            window, shift = min(H, W), 0
        h = self.norm1(x).view(B, H, W, C)
        pad_b, pad_r = (-H) % window, (-W) % window
        h = F.pad(h, (0, 0, 0, pad_r, 0, pad_b))                               # (B, Hp, Wp, C)
        Hp, Wp = H + pad_b, W + pad_r
        if shift:
            h = torch.roll(h, shifts=(-shift, -shift), dims=(1, 2))            # cyclic shift
        mask = shift_mask(Hp, Wp, window, shift).to(x.device) if shift else None
        out = self.attn(window_partition(h, window), window, mask)             # (B·nW, M², C)
        out = window_reverse(out, window, Hp, Wp)                               # (B, Hp, Wp, C)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))          # undo the shift
        x = x + out[:, :H, :W].reshape(B, L, C)                                 # ẑ = W-MSA(LN(z)) + z
        return x + self.ffn(self.norm2(x))                                      # z = MLP(LN(ẑ)) + ẑ


class PatchMerging(nn.Module):
    """(B, H·W, C) -> (B, ⌈H/2⌉·⌈W/2⌉, 2C): concat each 2×2 group, LN, linear 4C -> 2C (no bias)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.norm = LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        B, _, C = x.shape
        x = F.pad(x.view(B, H, W, C), (0, 0, 0, W % 2, 0, H % 2))               # even sides
        # x0 = (even row, even col), x1 = (odd, even), x2 = (even, odd), x3 = (odd, odd)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))                 # (B, H/2·W/2, 2C)


class Swin(nn.Module):
    """Swin backbone: patch embedding + LN, stages of blocks with a merge between them, final LN.

    `features(x)` -> each stage's map (B, C_s, H_s, W_s) before merging (for detection/segmentation);
    `forward(x)` -> final normed tokens (B, L, C) (HF's last_hidden_state); `pool(x)` their mean."""

    def __init__(self, patch_size: int = 2, in_channels: int = 1, embed_dim: int = 32, depths: Sequence[int] = (2, 2),
                 heads: Sequence[int] = (2, 4), window: int = 7, mlp_ratio: float = 4.0, eps: float = 1e-5):
        super().__init__()
        if len(depths) != len(heads) or not depths:
            raise ValueError(f"depths {tuple(depths)} and heads {tuple(heads)} need the same (non-zero) length")
        self.patch_size = patch_size
        self.patch_embed = Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.embed_norm = LayerNorm(embed_dim)
        self.stages = nn.ModuleList()
        self.merges = nn.ModuleList()
        dim = embed_dim
        for s, (depth, h) in enumerate(zip(depths, heads)):
            if dim % h:
                raise ValueError(f"stage {s}: width {dim} is not divisible by {h} heads")
            self.stages.append(nn.ModuleList(SwinBlock(dim, h, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, eps)
                                             for i in range(depth)))
            if s < len(depths) - 1:
                self.merges.append(PatchMerging(dim))
                dim *= 2
        self.out_channels = dim
        self.norm = LayerNorm(dim, eps=eps)

    def _run(self, x: Tensor) -> tuple[Tensor, int, int, list[Tensor]]:
        P = self.patch_size
        x = F.pad(x, (0, (-x.size(-1)) % P, 0, (-x.size(-2)) % P))              # sides multiple of P
        x = self.patch_embed(x)                                                 # (B, C, H/P, W/P)
        H, W = x.shape[-2:]
        x = self.embed_norm(x.flatten(2).transpose(1, 2))                       # (B, H·W, C)
        maps = []
        for s, blocks in enumerate(self.stages):
            for block in blocks:
                x = block(x, H, W)
            maps.append(x.transpose(1, 2).reshape(x.size(0), -1, H, W))
            if s < len(self.merges):
                x = self.merges[s](x, H, W)
                H, W = (H + 1) // 2, (W + 1) // 2
        return self.norm(x), H, W, maps

    def features(self, x: Tensor) -> list[Tensor]:
        return self._run(x)[3]

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x)[0]

    def pool(self, x: Tensor) -> Tensor:
        return self._run(x)[0].mean(dim=1)                                      # (B, C)


class SwinClassifier(Swin):
    """Swin + linear head on the mean of the final tokens (HF SwinForImageClassification)."""

    def __init__(self, num_classes: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.head = nn.Linear(self.out_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(super().forward(x).mean(dim=1))


HF_NAMES = [("embeddings.patch_embeddings.projection", "patch_embed"), ("embeddings.norm", "embed_norm"),
            ("attention.relative_position_bias.", "attn."), ("attention.", "attn.attn."),
            ("layernorm_before", "norm1"), ("layernorm_after", "norm2"), ("mlp.fc1", "ffn.up_proj"),
            ("mlp.fc2", "ffn.down_proj"), ("layernorm.", "norm."), ("classifier", "head")]


def from_hf_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face SwinModel / SwinForImageClassification (transformers ≥ 5) state dict in our names."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("swin.")
        for hf, ours in HF_NAMES:
            key = key.replace(hf, ours)
        if key.startswith("encoder.layers."):   # encoder.layers.{s}.blocks.{i}. / .downsample.
            _, _, stage, kind, rest = key.split(".", 4)
            key = f"stages.{stage}.{rest}" if kind == "blocks" else f"merges.{stage}.{rest}"
        out[key] = value
    return out
