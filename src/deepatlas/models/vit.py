"""Vision Transformer (Dosovitskiy et al. 2021, "An image is worth 16×16 words"), map place V1.

eq. (1)  z₀ = [x_class; x_p¹E; …; x_pᴺE] + E_pos        N = HW/P² patches of P×P pixels, E: (P²C, D)
eq. (2)  z'_ℓ = MSA(LN(z_{ℓ−1})) + z_{ℓ−1}
eq. (3)  z_ℓ = MLP(LN(z'_ℓ)) + z'_ℓ                     (pre-norm blocks: deepatlas.nn.blocks)
eq. (4)  y = LN(z_L⁰)                                   the class token's final state -> linear head

The patch projection E is a P×P conv with stride P, or — the same numbers — unfold the image into
its patches (im2col) and multiply by E: `patch_form="unfold"` (tests: equal). Position embeddings
are learned; for another resolution they are resampled bicubically over the patch grid (§3.2,
"fine-tuning at higher resolution"), as Hugging Face's `interpolate_pos_encoding`.
Equal to HF ViTForImageClassification with copied weights (tests/models/test_vit.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.nn.attention import MultiHeadAttention
from deepatlas.nn.blocks import TransformerBlock
from deepatlas.nn.conv import Conv2d, im2col
from deepatlas.nn.norms import LayerNorm


class PatchEmbedding(nn.Module):
    """(B, C, H, W) -> (B, N, D) patch tokens, N = (H/P)(W/P), row-major over the patch grid."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, form: str = "conv"):
        super().__init__()
        if form not in ("conv", "unfold"):
            raise ValueError(f"patch form {form!r}; valid: conv, unfold")
        self.patch_size, self.form = patch_size, form
        self.proj = Conv2d(in_channels, dim, patch_size, stride=patch_size)   # E as a (D, C, P, P) kernel

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        P = self.patch_size
        if H % P or W % P or C != self.proj.weight.shape[1]:
            raise ValueError(f"image {tuple(x.shape[1:])}: needs {self.proj.weight.shape[1]} channels and a size "
                             f"divisible by the patch size {P}")
        if self.form == "conv":
            return self.proj(x).flatten(2).transpose(1, 2)                     # (B, N, D)
        patches = im2col(x, P, stride=P).transpose(1, 2)                       # (B, N, C·P·P)
        # x_p E + b: the conv's kernel flattened is E                          (B, N, D)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


def conv_stem(in_channels: int, channels: int, layers: int = 2) -> nn.Sequential:
    """The hybrid ViT's CNN stem (Dosovitskiy et al. 2021, §3.1 "Hybrid Architecture"): 3×3 convs of
    stride 2 with GELU; the ViT's patches are taken from its feature map. (B, C, H, W) -> (B, ch, H/2^L, W/2^L)."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, stride=2, padding=1), nn.GELU()]
    return nn.Sequential(*mods)


def attention_weights(attn: MultiHeadAttention, h: Tensor) -> Tensor:
    """softmax(Q Kᵀ / √d_k) of self-attention `attn` on (normed) tokens h (B, T, D) -> (B, nh, T, T)."""
    q = attn._heads(attn.q_proj(h), attn.n_head)                               # (B, nh, T, hd)
    k = attn._heads(attn.k_proj(h), attn.n_kv_head)                            # (B, nh, T, hd)
    return (q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim)).softmax(dim=-1)


class ViT(nn.Module):
    """ViT classifier; `features(x)` gives the final normed tokens (B, 1+N, D) for other heads."""

    def __init__(self, image_size: int | tuple[int, int] = 28, patch_size: int = 4, in_channels: int = 1,
                 num_classes: int = 10, dim: int = 64, depth: int = 4, heads: int = 4, mlp_dim: int = 128,
                 dropout: float = 0.0, eps: float = 1e-6, patch_form: str = "conv"):
        super().__init__()
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if h % patch_size or w % patch_size:
            raise ValueError(f"image size {(h, w)} is not divisible by patch size {patch_size}")
        self.grid = (h // patch_size, w // patch_size)
        self.patch_embed = PatchEmbedding(in_channels, dim, patch_size, patch_form)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)                            # x_class
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + self.grid[0] * self.grid[1], dim) * 0.02)  # E_pos
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_dim, norm_first=True, dropout=dropout,
                                                     activation="gelu", eps=eps) for _ in range(depth))
        self.norm = LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, num_classes)

    def positions(self, grid: tuple[int, int]) -> Tensor:
        """E_pos for a (gh, gw) patch grid: the learned table, or its bicubic resampling. (1, 1+gh·gw, D)"""
        if grid == self.grid:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        D = patch_pos.size(-1)
        table = patch_pos.reshape(1, *self.grid, D).permute(0, 3, 1, 2)           # (1, D, gh, gw)
        table = F.interpolate(table, size=grid, mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, table.permute(0, 2, 3, 1).reshape(1, -1, D)], dim=1)

    def embed(self, x: Tensor, interpolate: bool = False) -> Tensor:
        """eq. (1): z₀ (B, 1+N, D)."""
        grid = (x.size(-2) // self.patch_embed.patch_size, x.size(-1) // self.patch_embed.patch_size)
        if grid != self.grid and not interpolate:
            raise ValueError(f"image {tuple(x.shape[-2:])} gives a {grid} patch grid but the model was built for "
                             f"{self.grid}; pass interpolate=True to resample the position embeddings")
        tokens = self.patch_embed(x)                                               # (B, N, D)
        cls = self.cls_token.expand(x.size(0), -1, -1)                             # (B, 1, D)
        return self.dropout(torch.cat([cls, tokens], dim=1) + self.positions(grid))

    def features(self, x: Tensor, interpolate: bool = False, return_attention: bool = False
                 ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Final tokens LN(z_L) (B, 1+N, D); with return_attention also each layer's (B, nh, T, T) maps."""
        z = self.embed(x, interpolate)
        maps = []
        for block in self.blocks:
            if return_attention:   # the same q, k the block computes, kept (the fused kernel drops them)
                maps.append(attention_weights(block.self_attn, block.norm1(z)))
            z = block(z)                                                           # eqs. (2)-(3)
        z = self.norm(z)
        return (z, maps) if return_attention else z

    def forward(self, x: Tensor, interpolate: bool = False, return_attention: bool = False
                ) -> Tensor | tuple[Tensor, list[Tensor]]:
        out = self.features(x, interpolate, return_attention)
        z, maps = out if return_attention else (out, None)
        logits = self.head(z[:, 0])                                                # eq. (4) class token
        return (logits, maps) if return_attention else logits


HF_NAMES = [("embeddings.cls_token", "cls_token"), ("embeddings.position_embeddings", "pos_embed"),
            ("embeddings.patch_embeddings.projection", "patch_embed.proj"), ("layers.", "blocks."),
            ("attention.", "self_attn."), ("layernorm_before", "norm1"), ("layernorm_after", "norm2"),
            ("mlp.fc1", "ffn.up_proj"), ("mlp.fc2", "ffn.down_proj"), ("layernorm.", "norm."), ("classifier", "head")]


def from_hf_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face ViTForImageClassification (transformers ≥ 5) state dict in our names."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("vit.")
        for hf, ours in HF_NAMES:
            key = key.replace(hf, ours)
        out[key] = value
    return out
