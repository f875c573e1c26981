"""The diffusion U-Net (Ronneberger et al. 2015; as used by Ho et al. 2020 §4 / Appendix B).

    x_t (B, C, H, W), t (B,) [, class (B,)]  ->  network output (B, C, H, W)  (ε, x_0 or v)

Layout, the same as diffusers' UNet2DModel so its weights copy over one to one
(tests/models/test_unet.py):
    t -> sinusoidal embedding (Vaswani et al. 2017 §3.5 applied to the diffusion step; Ho et al.
         App. B) -> Linear, SiLU, Linear = temb (B, 4·c0)  [+ class embedding, for guidance]
    conv_in 3×3 -> down levels: `layers` residual blocks (+ self-attention where asked), then a
         stride-2 conv except at the last level; every block's output is kept as a skip
    middle: ResBlock, self-attention, ResBlock (at the lowest resolution)
    up levels: `layers + 1` ResBlocks, each reading the concatenation [h, skip] (the skip
         connections), then nearest ×2 + 3×3 conv except at the last level
    GroupNorm, SiLU, conv_out 3×3.
Residual block (He et al. 2016 with GroupNorm, Wu & He 2018): h = conv(SiLU(GN(x))) + W temb;
h = conv(dropout(SiLU(GN(h)))); out = x' + h (x' = 1×1 conv of x when channels change).
Self-attention is nn.attention.MultiHeadAttention over the H·W positions, with GroupNorm before
it and a residual around it.

Text conditioning (Rombach et al. 2022 "High-Resolution Image Synthesis with Latent Diffusion
Models" §3.3, eq. 3): with UNetConfig.context_dim > 0 every attention becomes a SpatialTransformer
(diffusers' Transformer2DModel): GN, 1×1 conv, then a pre-norm Transformer block over the H·W
positions — self-attention, cross-attention to the text tokens τ_θ(y) (B, S, context_dim),
    Attention(Q, K, V) = softmax(Q Kᵀ/√d) V,  Q = W_Q φ(z_t),  K = W_K τ_θ(y),  V = W_V τ_θ(y),
and a GEGLU feed-forward — then a 1×1 conv and the residual. The layout then equals diffusers'
UNet2DConditionModel (CrossAttn*Block2D where attention is on; tests/models/test_ldm.py).
The residual blocks take temb_dim=None for networks without a time step (the autoencoder of
models/autoencoder_kl.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.nn.attention import MultiHeadAttention
from deepatlas.nn.blocks import TransformerBlock


def timestep_embedding(t: Tensor, dim: int, flip_sin_to_cos: bool = True, freq_shift: float = 0.0,
                       max_period: float = 10000.0) -> Tensor:
    """(B,) steps -> (B, dim): [sin(t ω_i), cos(t ω_i)] with ω_i = max_period^(−i/(dim/2 − shift)).

    Vaswani et al.'s sinusoids of a (possibly fractional) step t rather than a table of integer
    positions (nn.positions.sinusoidal_table interleaves sin/cos; diffusion U-Nets concatenate the
    halves, cos first with flip_sin_to_cos, so the layout is kept here for weight compatibility)."""
    half = dim // 2
    # ω_i = exp(−ln(max_period) · i / (half − shift))                (half,)
    omega = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
                      / (half - freq_shift))
    angle = t.float()[:, None] * omega[None, :]                         # (B, half)
    emb = torch.cat([angle.sin(), angle.cos()], dim=-1)                 # (B, dim)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class ResBlock(nn.Module):
    """GN-SiLU-conv, + projected time embedding (unless temb_dim is None), GN-SiLU-dropout-conv, + shortcut."""

    def __init__(self, c_in: int, c_out: int, temb_dim: int | None, groups: int, dropout: float = 0.0,
                 eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in, eps=eps)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_proj = nn.Linear(temb_dim, c_out) if temb_dim else None
        self.norm2 = nn.GroupNorm(groups, c_out, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        """x (B, c_in, H, W), temb (B, temb_dim) -> (B, c_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_proj is not None:
            h = h + self.time_proj(F.silu(temb))[:, :, None, None]       # the step enters every block
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class SpatialSelfAttention(nn.Module):
    """x + Attention(GN(x)) over the H·W positions of a feature map (Ho et al. App. B, 16×16)."""

    def __init__(self, channels: int, head_dim: int, groups: int, eps: float = 1e-5):
        super().__init__()
        if channels % head_dim:
            raise ValueError(f"attention channels {channels} not divisible by head_dim {head_dim}")
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        self.attn = MultiHeadAttention(channels, channels // head_dim, bias=True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).reshape(B, C, H * W).transpose(1, 2)            # (B, HW, C)
        h = self.attn(h)                                                # (B, HW, C)
        return x + h.transpose(1, 2).reshape(B, C, H, W)


def _sd_attention(dim: int, heads: int, context_dim: int | None = None) -> MultiHeadAttention:
    """Stable Diffusion's attention: q/k/v without bias, the output projection with one."""
    attn = MultiHeadAttention(dim, heads, bias=False, context_dim=context_dim)
    attn.o_proj = nn.Linear(dim, dim)
    return attn


class SpatialTransformer(nn.Module):
    """x + proj_out(Block(proj_in(GN(x)), context)): LDM's cross-attention to the text tokens (§3.3).

    The block is nn.blocks.TransformerBlock as a pre-norm decoder block — x += SelfAttn(LN(x));
    x += CrossAttn(LN(x), context); x += GEGLU-FFN(LN(x)) — over the H·W positions."""

    def __init__(self, channels: int, head_dim: int, groups: int, context_dim: int, depth: int = 1):
        super().__init__()
        if channels % head_dim:
            raise ValueError(f"attention channels {channels} not divisible by head_dim {head_dim}")
        heads = channels // head_dim
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            block = TransformerBlock(channels, heads, 4 * channels, cross_attention=True, norm_first=True,
                                     activation="geglu")
            block.self_attn = _sd_attention(channels, heads)
            block.cross_attn = _sd_attention(channels, heads, context_dim)    # K, V from τ_θ(y)
            self.blocks.append(block)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x (B, C, H, W), context (B, S, context_dim) -> (B, C, H, W)."""
        if context is None:
            raise ValueError("this U-Net is text-conditional: pass context (B, S, context_dim), the text tokens")
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x)).reshape(B, C, H * W).transpose(1, 2)   # (B, HW, C)
        for block in self.blocks:
            h = block(h, context)                                             # (B, HW, C)
        return x + self.proj_out(h.transpose(1, 2).reshape(B, C, H, W))


class Level(nn.Module):
    """One resolution of the U-Net: ResBlocks (each optionally followed by attention) and a resampler."""

    def __init__(self, resnets: list[ResBlock], attentions: list[nn.Module],
                 resample: nn.Module | None):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)
        self.resample = resample


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 conv (avoids the checkerboard of transposed convs)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def embedding_mlp(d_in: int, temb: int) -> nn.Sequential:
    """Linear → SiLU → Linear into the time-embedding width (diffusers' TimestepEmbedding): the
    sinusoid of t goes through one, a pooled text embedding through another."""
    return nn.Sequential(nn.Linear(d_in, temb), nn.SiLU(), nn.Linear(temb, temb))


@dataclass
class UNetConfig:
    in_channels: int = 1
    out_channels: int = 1
    channels: tuple[int, ...] = (32, 64)       # per level; each level but the last halves H and W
    attention: tuple[bool, ...] = (False, True)  # self-attention at that level (low resolution)
    layers: int = 1                            # ResBlocks per down level (up levels get layers + 1)
    groups: int = 8                            # GroupNorm groups
    head_dim: int = 16                         # attention head size
    class_embeds: int = 0                      # > 0: a label embedding added to temb (n classes + null)
    context_dim: int = 0                       # > 0: cross-attention to text tokens of this width (LDM)
    pooled_dim: int = 0                        # > 0: a pooled text embedding of this width, projected and
                                               # added to temb (diffusers class_embed_type="projection";
                                               # SDXL adds CLIP's pooled text embedding the same way)
    dropout: float = 0.0


class UNet(nn.Module):
    """forward(x (B, C, H, W), t (B,) or int, labels (B,) | None) -> (B, out_channels, H, W)."""

    def __init__(self, cfg: UNetConfig = UNetConfig()):
        super().__init__()
        if len(cfg.attention) != len(cfg.channels):
            raise ValueError(f"attention {cfg.attention} needs one flag per level of channels {cfg.channels}")
        bad = [c for c in cfg.channels if c % cfg.groups]
        if bad:
            raise ValueError(f"channels {bad} not divisible by GroupNorm groups {cfg.groups}")
        self.cfg = cfg
        c0, temb = cfg.channels[0], 4 * cfg.channels[0]
        self.time_mlp = embedding_mlp(c0, temb)
        self.class_embedding = nn.Embedding(cfg.class_embeds, temb) if cfg.class_embeds else None
        self.pooled_embedding = embedding_mlp(cfg.pooled_dim, temb) if cfg.pooled_dim else None
        self.conv_in = nn.Conv2d(cfg.in_channels, c0, 3, padding=1)

        def res(a: int, b: int) -> ResBlock:
            return ResBlock(a, b, temb, cfg.groups, cfg.dropout)

        def attn(c: int) -> nn.Module:
            if cfg.context_dim:
                return SpatialTransformer(c, cfg.head_dim, cfg.groups, cfg.context_dim)
            return SpatialSelfAttention(c, cfg.head_dim, cfg.groups)

        last = len(cfg.channels) - 1
        self.downs = nn.ModuleList()
        c_prev = c0
        for i, c in enumerate(cfg.channels):
            self.downs.append(Level([res(c_prev if j == 0 else c, c) for j in range(cfg.layers)],
                                    [attn(c) for _ in range(cfg.layers)] if cfg.attention[i] else [],
                                    nn.Conv2d(c, c, 3, stride=2, padding=1) if i < last else None))
            c_prev = c
        c_mid = cfg.channels[-1]
        self.mid = nn.ModuleList([res(c_mid, c_mid), attn(c_mid), res(c_mid, c_mid)])
        # up level i mirrors down level last − i; its skips come in reverse order of creation
        rev = list(reversed(cfg.channels))
        self.ups = nn.ModuleList()
        c_out = rev[0]
        for i, c in enumerate(rev):
            c_prev, c_out = c_out, c
            c_below = rev[min(i + 1, last)]          # channels of the skips from the level below
            blocks = []
            for j in range(cfg.layers + 1):
                skip = c_below if j == cfg.layers else c
                blocks.append(res((c_prev if j == 0 else c) + skip, c))
            self.ups.append(Level(blocks, [attn(c) for _ in blocks] if cfg.attention[last - i] else [],
                                  Upsample(c) if i < last else None))
        self.norm_out = nn.GroupNorm(cfg.groups, c0)
        self.conv_out = nn.Conv2d(c0, cfg.out_channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor | int, labels: Tensor | None = None, context: Tensor | None = None,
                pooled: Tensor | None = None) -> Tensor:
        """context (B, S, context_dim): the text tokens a text-conditional U-Net cross-attends to;
        pooled (B, pooled_dim): one vector per text (UNetConfig.pooled_dim > 0), added to temb, so every
        ResBlock sees the text as it sees t (a global path beside cross-attention's per-position one)."""
        B = x.shape[0]
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(B)                  # (B,)
        temb = self.time_mlp(timestep_embedding(t, self.cfg.channels[0]))              # (B, 4·c0)
        if self.class_embedding is not None:
            if labels is None:
                raise ValueError("this U-Net is class-conditional: pass labels (B,) (the null class for none)")
            temb = temb + self.class_embedding(labels)
        elif labels is not None:
            raise ValueError("labels given to an unconditional U-Net (UNetConfig.class_embeds=0)")
        if self.pooled_embedding is not None:
            if pooled is None:
                raise ValueError(f"this U-Net takes a pooled text embedding: pass pooled (B, {self.cfg.pooled_dim})")
            temb = temb + self.pooled_embedding(pooled)                                # (B, 4·c0)
        elif pooled is not None:
            raise ValueError("pooled given to a U-Net without a pooled projection (UNetConfig.pooled_dim=0)")
        if context is not None and not self.cfg.context_dim:
            raise ValueError("context given to a U-Net without cross-attention (UNetConfig.context_dim=0)")
        h = self.conv_in(x)                                                            # (B, c0, H, W)
        skips = [h]
        for level in self.downs:
            for j, block in enumerate(level.resnets):
                h = block(h, temb)
                if len(level.attentions):
                    h = level.attentions[j](h, context)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)                                  # (B, c, H/2, W/2)
                skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, temb), context), temb)
        for level in self.ups:
            for j, block in enumerate(level.resnets):
                h = block(torch.cat([h, skips.pop()], dim=1), temb)    # skip connection
                if len(level.attentions):
                    h = level.attentions[j](h, context)
            if level.resample is not None:
                h = level.resample(h)                                  # (B, c, 2H, 2W)
        return self.conv_out(F.silu(self.norm_out(h)))
