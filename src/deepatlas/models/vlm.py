"""Vision-language models on a decoder LLM (map place M2): LLaVA's projector and Flamingo's
Perceiver Resampler with gated cross-attention, and the text-only model they are compared with.

LLaVA (Liu et al. 2023, "Visual Instruction Tuning", §4; LLaVA-1.5's two-layer MLP, Liu et al. 2024):
    Z_v = g(X_v)                 patch features of a (frozen) vision encoder       (B, N, D_v)
    H_v = W₂ GELU(W₁ Z_v)        the projector: visual tokens in the LLM's word-embedding space (B, N, d)
    h₀ = [H_v ; E[x_text]]       image tokens placed before the text tokens          (B, N + T, d)
    stage 1: train W₁, W₂ only (LLM frozen) on captions; stage 2: + the LLM (here LoRA adapters)
    on question–answer pairs; the loss is on the answer tokens only.

Flamingo (Alayrac et al. 2022, §2.1–2.2, Fig. 4–5):
    Perceiver Resampler: R learned latents X attend to the visual features X_f
        X ← X + Attn(q = LN(X), kv = LN([X_f ; X]));   X ← X + FFW(LN(X))       (B, R, D_v)
    gated cross-attention dense layer, inserted before some frozen LM blocks:
        y ← y + tanh(α_xattn) · Attn(q = LN(y), kv = X)
        y ← y + tanh(α_dense) · FFW(LN(y))
    α initialised at 0: at the start the model *is* the frozen LM (tests/models/test_vlm.py).

All three designs give the LLM's final hidden states over the text tokens, `text_hidden(images,
ids) -> (B, T, d)`, so one loss (on chosen positions only: the 49k-word head is the costliest
matmul) and one greedy decoder with a KV cache serve them all.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.llama import Llama
from deepatlas.models.vit import ViT
from deepatlas.nn.attention import MultiHeadAttention
from deepatlas.nn.ffn import FeedForward
from deepatlas.nn.norms import LayerNorm


class VisionTower(nn.Module):
    """A ViT's final patch tokens, average-pooled onto a grid × grid layout: (B, C, H, W) -> (B, grid², D).

    Pooling keeps the visual sequence short (9 tokens for grid 3) — the LLM pays per token.
    stem: an optional CNN before the ViT (a hybrid ViT; the ViT's in_channels are the stem's).
    feat_mean, feat_std (D,): a fixed standardisation z ← (z − μ) / σ of the output (0 and 1 until
    `standardise` sets them from training images), saved with the tower."""

    def __init__(self, vit: ViT, grid: int = 3, stem: nn.Module | None = None):
        super().__init__()
        if not 1 <= grid <= min(vit.grid):
            raise ValueError(f"pooled grid {grid}; valid: 1..{min(vit.grid)} (the ViT's patch grid is {vit.grid})")
        self.vit, self.grid, self.stem = vit, grid, stem
        dim = vit.pos_embed.size(-1)
        self.register_buffer("feat_mean", torch.zeros(dim))
        self.register_buffer("feat_std", torch.ones(dim))

    @property
    def dim(self) -> int:
        return self.vit.pos_embed.size(-1)

    def forward(self, images: Tensor) -> Tensor:
        x = images if self.stem is None else self.stem(images)                # (B, C', H', W')
        z = self.vit.features(x)[:, 1:]                                       # patch tokens (B, N, D)
        B, N, D = z.shape
        gh, gw = self.vit.grid
        z = z.transpose(1, 2).reshape(B, D, gh, gw)                           # (B, D, gh, gw)
        z = F.adaptive_avg_pool2d(z, self.grid)                               # (B, D, g, g)
        return (z.flatten(2).transpose(1, 2) - self.feat_mean) / self.feat_std  # (B, g², D)

    @torch.no_grad()
    def standardise(self, images: Tensor, batch: int = 256) -> None:
        """Set μ, σ per feature dimension over `images` and their grid² tokens: a LayerNormed ViT's
        tokens share a large constant part, and the image-dependent rest (std ≈ 0.1 of a norm ≈ 8 at
        init) would reach the LLM as a small ripple on a fixed vector."""
        self.feat_mean.zero_()
        self.feat_std.fill_(1.0)
        z = torch.cat([self(images[i:i + batch]) for i in range(0, len(images), batch)]).flatten(0, 1)  # (N·g², D)
        self.feat_mean.copy_(z.mean(0))
        self.feat_std.copy_(z.std(0).clamp_min(1e-6))


class MLPProjector(nn.Module):
    """LLaVA-1.5's projector H_v = W₂ GELU(W₁ Z_v): (B, N, D_v) -> (B, N, d)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or out_dim
        self.fc1, self.fc2 = nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(z)))


class PerceiverResampler(nn.Module):
    """R learned latents cross-attend to the visual features: (B, N, D) -> (B, R, D) for any N."""

    def __init__(self, dim: int, n_latents: int = 8, depth: int = 2, heads: int = 4, ff_mult: int = 4):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n_latents, dim) * 0.02)      # X (R, D)
        self.layers = nn.ModuleList(nn.ModuleDict({
            "norm_media": LayerNorm(dim), "norm_latents": LayerNorm(dim),
            "attn": MultiHeadAttention(dim, heads, bias=False),
            "norm_ff": LayerNorm(dim), "ff": FeedForward(dim, ff_mult * dim, "gelu", bias=False)})
            for _ in range(depth))

    def forward(self, feats: Tensor) -> Tensor:
        x = self.latents.expand(feats.size(0), -1, -1)                        # (B, R, D)
        for layer in self.layers:
            lat = layer["norm_latents"](x)
            # keys/values are the features *and* the latents: kv = [X_f ; X]  (B, N + R, D)
            kv = torch.cat([layer["norm_media"](feats), lat], dim=1)
            x = x + layer["attn"](lat, kv)                                     # X ← X + Attn(X, [X_f; X])
            x = x + layer["ff"](layer["norm_ff"](x))                           # X ← X + FFW(X)
        return x


class GatedCrossAttention(nn.Module):
    """Flamingo's GATED XATTN-DENSE: (B, T, d) text states, (B, R, D_v) visual tokens -> (B, T, d)."""

    def __init__(self, dim: int, media_dim: int, heads: int, ff_mult: int = 2):
        super().__init__()
        self.norm_attn, self.norm_ff = LayerNorm(dim), LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, bias=False, context_dim=media_dim)
        self.ff = FeedForward(dim, ff_mult * dim, "gelu", bias=False)
        self.attn_gate = nn.Parameter(torch.zeros(()))                        # α_xattn = 0 at init
        self.ff_gate = nn.Parameter(torch.zeros(()))                          # α_dense = 0 at init

    def forward(self, y: Tensor, media: Tensor) -> Tensor:
        y = y + self.attn_gate.tanh() * self.attn(self.norm_attn(y), media)  # y + tanh(α) Attn(LN(y), X)
        return y + self.ff_gate.tanh() * self.ff(self.norm_ff(y))             # y + tanh(α) FFW(LN(y))


def run_blocks(llm: Llama, h: Tensor, before: Callable[[int, Tensor], Tensor] | None = None,
               cache=None, pos: int = 0) -> Tensor:
    """The LLM's blocks and final norm on input embeddings h (B, T, d) -> (B, T, d).

    before(i, h) transforms the states entering block i (Flamingo's inserted layers). With a
    KVCache, h holds positions pos..pos+T−1 (T > 1 only when pos = 0: a prefill)."""
    if cache is not None and pos > 0 and h.size(1) > 1:
        raise ValueError("run_blocks with a cache takes a prefill (pos 0) or one token at a time")
    for i, block in enumerate(llm.blocks):
        if before is not None:
            h = before(i, h)
        h = block(h, causal=h.size(1) > 1, cache=cache, layer=i, pos=pos)
    return llm.norm(h)


class TextOnlyLM(nn.Module):
    """The baseline: the LLM on the text alone (images ignored)."""

    prefix_len = 0

    def __init__(self, llm: Llama):
        super().__init__()
        self.llm = llm

    def condition(self, images: Tensor | None) -> Tensor | None:
        return None

    def prefix(self, cond: Tensor | None, batch: int) -> Tensor | None:
        return None

    def before(self, cond: Tensor | None) -> Callable[[int, Tensor], Tensor] | None:
        return None

    def text_hidden(self, images: Tensor | None, ids: Tensor) -> Tensor:
        """(B, T) ids -> the final normed states over the text tokens (B, T, d)."""
        return _hidden(self, self.condition(images), ids)


class LlavaVLM(TextOnlyLM):
    """Visual tokens (the projector's output) before the text: h₀ = [H_v ; E[x]]."""

    def __init__(self, tower: nn.Module, llm: Llama, projector: nn.Module):
        super().__init__(llm)
        self.tower, self.projector = tower, projector

    @property
    def prefix_len(self) -> int:
        return self.tower.grid ** 2 if isinstance(self.tower, VisionTower) else -1

    def condition(self, images: Tensor | None) -> Tensor:
        """H_v (B, N, d) from images (B, C, H, W), or from precomputed tower features (B, N, D_v)."""
        if images is None:
            raise ValueError("a vision-language model needs images")
        feats = images if images.dim() == 3 else self.tower(images)
        return self.projector(feats)

    def prefix(self, cond: Tensor | None, batch: int) -> Tensor:
        return cond


class FlamingoVLM(TextOnlyLM):
    """Resampled visual tokens read by gated cross-attention layers before every `every`-th LM block."""

    def __init__(self, tower: nn.Module, llm: Llama, resampler: PerceiverResampler, every: int = 6,
                 heads: int | None = None, ff_mult: int = 2):
        super().__init__(llm)
        n = len(llm.blocks)
        if not 1 <= every <= n:
            raise ValueError(f"cross-attention every {every} blocks; valid: 1..{n}")
        self.tower, self.resampler = tower, resampler
        self.layer_ids = list(range(0, n, every))                             # blocks 0, every, 2·every, ...
        dim, media = llm.config.dim, resampler.latents.size(-1)
        self.xattn = nn.ModuleList(GatedCrossAttention(dim, media, heads or llm.config.n_head, ff_mult)
                                   for _ in self.layer_ids)

    def condition(self, images: Tensor | None) -> Tensor:
        """The resampler's R visual tokens (B, R, D_v)."""
        if images is None:
            raise ValueError("a vision-language model needs images")
        feats = images if images.dim() == 3 else self.tower(images)
        return self.resampler(feats)

    def before(self, cond: Tensor | None) -> Callable[[int, Tensor], Tensor]:
        where = {b: k for k, b in enumerate(self.layer_ids)}

        def insert(i: int, h: Tensor) -> Tensor:
            return self.xattn[where[i]](h, cond) if i in where else h
        return insert


def _hidden(model: TextOnlyLM, cond: Tensor | None, ids: Tensor) -> Tensor:
    h = model.llm.embed(ids)                                                  # E[x]   (B, T, d)
    pre = model.prefix(cond, ids.size(0))
    if pre is not None:
        h = torch.cat([pre.to(h.dtype), h], dim=1)                            # [H_v ; E[x]]  (B, N + T, d)
    out = run_blocks(model.llm, h, model.before(cond))
    return out[:, out.size(1) - ids.size(1):]                                 # the text positions (B, T, d)


def answer_loss(model: TextOnlyLM, images: Tensor | None, ids: Tensor, target_mask: Tensor) -> Tensor:
    """Mean cross-entropy of the tokens where target_mask (B, T) is True, each predicted from the
    position before it; the vocabulary head runs on those positions only."""
    if bool(target_mask[:, 0].any()):
        raise ValueError("the first token has no position before it to be predicted from")
    h = model.text_hidden(images, ids)                                        # (B, T, d)
    rows, cols = target_mask.nonzero(as_tuple=True)
    logits = model.llm.lm_head(h[rows, cols - 1])                             # (M, vocab)
    return F.cross_entropy(logits.float(), ids[rows, cols])


@torch.no_grad()
def greedy_answers(model: TextOnlyLM, images: Tensor | None, prompts: Tensor, max_new: int,
                   stop_id: int) -> list[list[int]]:
    """Greedy continuation of equal-length prompts (B, T) with a KV cache; each row's new ids up to
    (not including) stop_id, at most max_new."""
    B, T = prompts.shape
    cond = model.condition(images)
    llm = model.llm
    pre = model.prefix(cond, B)
    h = llm.embed(prompts)
    if pre is not None:
        h = torch.cat([pre.to(h.dtype), h], dim=1)
    before = model.before(cond)
    cache = llm.new_cache(B, h.size(1) + max_new)
    out = run_blocks(llm, h, before, cache=cache, pos=0)
    pos = h.size(1)
    new = torch.empty(B, 0, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    for step in range(max_new):
        token = llm.lm_head(out[:, -1]).argmax(-1)                            # (B,)
        new = torch.cat([new, token[:, None]], dim=1)
        done |= token == stop_id
        if bool(done.all()) or step == max_new - 1:
            break
        out = run_blocks(llm, llm.embed(token[:, None]), before, cache=cache, pos=pos)
        pos += 1
    answers = []
    for row in new.tolist():
        answers.append(row[:row.index(stop_id)] if stop_id in row else row)
    return answers
