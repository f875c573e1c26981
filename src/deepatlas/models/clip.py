"""CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"), map place M1: an image encoder and a text encoder trained so that matching
(image, caption) pairs have the largest cosine similarity in a batch.

    I_f = ViT(x)[CLS] ,  T_f = TextTransformer(t)[EOT]          tower features (B, D_img), (B, D_txt)
    I_e = l2_normalise(I_f W_i) ,  T_e = l2_normalise(T_f W_t)   joint embedding (B, d_e), no bias
    logits = exp(τ) · I_e T_eᵀ                                    (B, B), τ learned ("logit_scale")
    loss = (CE(logits, arange) + CE(logitsᵀ, arange)) / 2          symmetric InfoNCE (paper Fig. 3)

The image tower is our ViT (models/vit.py: its patch embedding, class token, position table,
pre-norm blocks and final LayerNorm) with CLIP's one addition, a LayerNorm *before* the blocks
("ln_pre"); the patch conv has no bias in CLIP, so ours is zeroed when loading. The text tower is
a causal pre-norm Transformer (nn/blocks) over token + learned position embeddings whose feature
is the final-LayerNorm state at the end-of-text token (the first EOT of each row).
Equal to HF CLIPModel with copied weights (tests/models/test_clip.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.vit import ViT
from deepatlas.nn.blocks import TransformerBlock
from deepatlas.nn.norms import LayerNorm


class CLIPImageEncoder(nn.Module):
    """(B, C, H, W) -> (B, dim): LN_post(ViT blocks(LN_pre(z₀)))[CLS]."""

    def __init__(self, image_size: int = 32, patch_size: int = 4, in_channels: int = 3, dim: int = 64,
                 depth: int = 2, heads: int = 4, mlp_dim: int = 128, eps: float = 1e-5, activation: str = "gelu"):
        super().__init__()
        self.vit = ViT(image_size, patch_size, in_channels, 1, dim, depth, heads, mlp_dim, eps=eps)
        self.vit.head = nn.Identity()                      # CLIP has no classifier; the projection follows
        if activation != "gelu":
            for block in self.vit.blocks:
                block.ffn.activation = activation
        self.pre_norm = LayerNorm(dim, eps=eps)            # CLIP's ln_pre, absent in ViT

    def forward(self, x: Tensor) -> Tensor:
        z = self.pre_norm(self.vit.embed(x))               # z₀, normed         (B, 1+N, D)
        for block in self.vit.blocks:
            z = block(z)                                   # pre-norm blocks    (B, 1+N, D)
        return self.vit.norm(z[:, 0])                      # LN_post of CLS     (B, D)


class CLIPTextEncoder(nn.Module):
    """(B, T) token ids -> (B, dim): the causal Transformer's normed state at each row's first EOT."""

    def __init__(self, vocab_size: int, eot_id: int, context: int = 16, dim: int = 64, depth: int = 2,
                 heads: int = 4, mlp_dim: int = 128, eps: float = 1e-5, activation: str = "gelu"):
        super().__init__()
        if not 0 <= eot_id < vocab_size:
            raise ValueError(f"end-of-text id {eot_id} is outside the vocabulary 0..{vocab_size - 1}")
        self.eot_id, self.context = eot_id, context
        self.token_embed = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.randn(context, dim) * 0.01)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_dim, norm_first=True, activation=activation,
                                                     eps=eps) for _ in range(depth))
        self.norm = LayerNorm(dim, eps=eps)

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        T = ids.shape[1]
        if T > self.context:
            raise ValueError(f"text of {T} tokens; the text encoder's context is {self.context}")
        is_eot = ids == self.eot_id
        if not bool(is_eot.any(-1).all()):
            raise ValueError(f"every row needs an end-of-text token (id {self.eot_id}); rows "
                             f"{(~is_eot.any(-1)).nonzero().flatten().tolist()} have none")
        h = self.token_embed(ids) + self.pos_embed[:T]                      # (B, T, D)
        pad = None if attention_mask is None else attention_mask == 0       # True = padding
        for block in self.blocks:
            h = block(h, causal=True, key_padding_mask=pad)                 # (B, T, D)
        return self.pooled(ids, self.norm(h))                               # (B, D)

    def pooled(self, ids: Tensor, tokens: Tensor) -> Tensor:
        """CLIP's pooled text embedding: each row's state (B, T, D) at its first end-of-text token -> (B, D)."""
        eot = (ids == self.eot_id).int().argmax(-1)                          # first EOT per row (B,)
        return tokens[torch.arange(ids.shape[0], device=ids.device), eot]


class CLIP(nn.Module):
    """Both towers, their linear projections into the joint space, and the learned temperature."""

    def __init__(self, vocab_size: int, eot_id: int, embed_dim: int = 32, image_size: int = 32,
                 patch_size: int = 4, in_channels: int = 3, image_dim: int = 64, image_depth: int = 2,
                 image_heads: int = 4, image_mlp: int = 128, context: int = 16, text_dim: int = 64,
                 text_depth: int = 2, text_heads: int = 4, text_mlp: int = 128, eps: float = 1e-5,
                 activation: str = "gelu", init_temperature: float = 0.07):
        super().__init__()
        self.image_encoder = CLIPImageEncoder(image_size, patch_size, in_channels, image_dim, image_depth,
                                              image_heads, image_mlp, eps, activation)
        self.text_encoder = CLIPTextEncoder(vocab_size, eot_id, context, text_dim, text_depth, text_heads,
                                            text_mlp, eps, activation)
        self.image_proj = nn.Linear(image_dim, embed_dim, bias=False)       # W_i
        self.text_proj = nn.Linear(text_dim, embed_dim, bias=False)         # W_t
        # τ = log(1/T): exp(τ) multiplies cosine similarities; init T = 0.07 as the paper
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def encode_image(self, x: Tensor) -> Tensor:
        """I_e: l2-normalised image embeddings (B, d_e)."""
        return F.normalize(self.image_proj(self.image_encoder(x)), dim=-1)

    def encode_text(self, ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """T_e: l2-normalised text embeddings (B, d_e)."""
        return F.normalize(self.text_proj(self.text_encoder(ids, attention_mask)), dim=-1)

    def forward(self, images: Tensor, ids: Tensor, attention_mask: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        """-> (logits_per_image (B_img, B_txt), logits_per_text (B_txt, B_img))."""
        img, txt = self.encode_image(images), self.encode_text(ids, attention_mask)
        # logits = exp(τ) · T_e I_eᵀ  (scaled cosine similarity)           (B_txt, B_img)
        logits_per_text = self.logit_scale.exp() * txt @ img.t()
        return logits_per_text.t(), logits_per_text


def clip_loss(logits_per_image: Tensor) -> Tensor:
    """Symmetric InfoNCE: the mean of image→text and text→image cross-entropy, matches on the diagonal."""
    if logits_per_image.size(0) != logits_per_image.size(1):
        raise ValueError(f"logits {tuple(logits_per_image.shape)}: the loss needs a square (B, B) batch of pairs")
    target = torch.arange(logits_per_image.size(0), device=logits_per_image.device)
    # loss = (CE(logits, arange) + CE(logitsᵀ, arange)) / 2
    return (F.cross_entropy(logits_per_image, target) + F.cross_entropy(logits_per_image.t(), target)) / 2


HF_NAMES = [("vision_model.embeddings.patch_embedding", "image_encoder.vit.patch_embed.proj"),
            ("vision_model.pre_layrnorm", "image_encoder.pre_norm"),
            ("vision_model.post_layernorm", "image_encoder.vit.norm"),
            ("vision_model.encoder.layers.", "image_encoder.vit.blocks."),
            ("text_model.embeddings.token_embedding", "text_encoder.token_embed"),
            ("text_model.final_layer_norm", "text_encoder.norm"),
            ("text_model.encoder.layers.", "text_encoder.blocks."),
            ("visual_projection", "image_proj"), ("text_projection", "text_proj"),
            ("self_attn.out_proj", "self_attn.o_proj"), ("layer_norm1", "norm1"), ("layer_norm2", "norm2"),
            ("mlp.fc1", "ffn.up_proj"), ("mlp.fc2", "ffn.down_proj")]


def from_hf_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face CLIPModel state dict in our names (zero bias for CLIP's bias-free patch conv)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key == "vision_model.embeddings.class_embedding":
            out["image_encoder.vit.cls_token"] = value.reshape(1, 1, -1)
            continue
        if key == "vision_model.embeddings.position_embedding.weight":
            out["image_encoder.vit.pos_embed"] = value.unsqueeze(0)
            continue
        if key == "text_model.embeddings.position_embedding.weight":
            out["text_encoder.pos_embed"] = value
            continue
        if key.endswith("position_ids"):
            continue
        for hf, ours in HF_NAMES:
            key = key.replace(hf, ours)
        out[key] = value
    conv = out["image_encoder.vit.patch_embed.proj.weight"]
    out["image_encoder.vit.patch_embed.proj.bias"] = conv.new_zeros(conv.size(0))
    return out
