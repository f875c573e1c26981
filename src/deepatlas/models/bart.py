"""BART: a denoising sequence-to-sequence autoencoder (Lewis et al. 2020) (map place L9).

Architecture: the post-norm encoder-decoder of Vaswani et al. (deepatlas.nn.blocks.TransformerBlock)
with GELU, learned positions (offset by 2, as fairseq's padding hack left them), a LayerNorm on
the embeddings of each stack, an output layer tied to the shared embedding plus a bias:

    h_0 = LN_emb(E[x]·s + P[pos + 2]),  s = √d if scale_embedding else 1
    P(y_t | y_<t, x) = softmax(h_dec W_Eᵀ + b_final)

Noising (§2.2), the decoder reconstructs the original document:
- text infilling: span lengths ℓ ~ Poisson(λ = 3) are drawn until they cover 30% of the tokens;
  each span (a 0-length one too) becomes ONE <mask> token, so the model must also infer how
  many tokens are missing;
- sentence permutation: the document is split at full stops and the sentences shuffled.
Equal to HF's BartForConditionalGeneration on copied weights (tests/models/test_bart.py).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.t5 import Seq2SeqLM
from deepatlas.nn.blocks import TransformerBlock
from deepatlas.nn.norms import LayerNorm
from deepatlas.nn.positions import LearnedPositions

POSITION_OFFSET = 2


@dataclass
class BartConfig:
    vocab_size: int = 50265
    d_model: int = 768
    n_encoder_layer: int = 6
    n_decoder_layer: int = 6
    n_head: int = 12
    d_ff: int = 3072
    max_len: int = 1024
    dropout: float = 0.0
    scale_embedding: bool = False
    activation: str = "gelu"
    pad_id: int = 1
    bos_id: int = 0
    eos_id: int = 2
    decoder_start_id: int = 2    # BART's decoder starts with </s>


class Bart(Seq2SeqLM):
    """forward(input_ids (B, S), decoder_input_ids (B, T), attention_mask (B, S) True = real)
    -> logits (B, T, vocab)."""

    def __init__(self, cfg: BartConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.shared = nn.Embedding(cfg.vocab_size, d)
        self.encoder_positions = LearnedPositions(d, cfg.max_len + POSITION_OFFSET)
        self.decoder_positions = LearnedPositions(d, cfg.max_len + POSITION_OFFSET)
        self.encoder_norm_emb = LayerNorm(d)
        self.decoder_norm_emb = LayerNorm(d)
        block = dict(d_model=d, n_head=cfg.n_head, d_ff=cfg.d_ff, dropout=cfg.dropout,
                     activation=cfg.activation, norm_first=False)
        self.encoder = nn.ModuleList(TransformerBlock(**block) for _ in range(cfg.n_encoder_layer))
        self.decoder = nn.ModuleList(TransformerBlock(**block, cross_attention=True)
                                     for _ in range(cfg.n_decoder_layer))
        self.register_buffer("final_logits_bias", torch.zeros(1, cfg.vocab_size))
        self.drop = nn.Dropout(cfg.dropout)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def _embed(self, ids: Tensor, positions: LearnedPositions, norm: LayerNorm, offset: int = 0) -> Tensor:
        scale = math.sqrt(self.cfg.d_model) if self.cfg.scale_embedding else 1.0
        # LN_emb(E[x]·s + P[pos + 2])                                  (B, T, d)
        x = self.shared(ids) * scale + positions(ids.size(1), offset + POSITION_OFFSET)
        return self.drop(norm(x))

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> memory (B, S, d), source padding (B, S) True = pad (or None)."""
        pad = None if attention_mask is None else ~attention_mask.bool()
        x = self._embed(input_ids, self.encoder_positions, self.encoder_norm_emb)
        for block in self.encoder:
            x = block(x, key_padding_mask=pad)
        return x, pad

    def decode(self, decoder_input_ids: Tensor, memory: Tensor, memory_pad: Tensor | None) -> Tensor:
        x = self._embed(decoder_input_ids, self.decoder_positions, self.decoder_norm_emb)
        for block in self.decoder:
            x = block(x, memory, causal=True, memory_key_padding_mask=memory_pad)
        # tied output layer + final_logits_bias                        (B, T, V)
        return F.linear(x, self.shared.weight) + self.final_logits_bias

    def forward(self, input_ids: Tensor, decoder_input_ids: Tensor,
                attention_mask: Tensor | None = None) -> Tensor:
        memory, pad = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, memory, pad)


_HF_RENAMES = [
    (r"model\.shared\.", "shared."),
    (r"model\.(encoder|decoder)\.embed_positions\.", r"\1_positions."),
    (r"model\.(encoder|decoder)\.layernorm_embedding\.", r"\1_norm_emb."),
    (r"model\.(encoder|decoder)\.layers\.(\d+)\.", r"\1.\2."),
    (r"\.self_attn\.out_proj\.", ".self_attn.o_proj."),
    (r"\.encoder_attn\.out_proj\.", ".cross_attn.o_proj."),
    (r"\.encoder_attn\.", ".cross_attn."),
    (r"\.self_attn_layer_norm\.", ".norm1."),
    (r"\.encoder_attn_layer_norm\.", ".norm_cross."),
    (r"\.fc1\.", ".ffn.up_proj."),
    (r"\.fc2\.", ".ffn.down_proj."),
    (r"\.final_layer_norm\.", ".norm2."),
]


def config_from_hf(hf) -> BartConfig:
    """A BartConfig from a transformers BartConfig."""
    if hf.encoder_attention_heads != hf.decoder_attention_heads or hf.encoder_ffn_dim != hf.decoder_ffn_dim:
        raise ValueError("this BART needs equal encoder/decoder heads and FFN sizes, got "
                         f"{hf.encoder_attention_heads}/{hf.decoder_attention_heads}, "
                         f"{hf.encoder_ffn_dim}/{hf.decoder_ffn_dim}")
    act = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh"}.get(hf.activation_function)
    if act is None:
        raise ValueError(f"activation {hf.activation_function!r}; valid: gelu, relu, gelu_new")
    return BartConfig(vocab_size=hf.vocab_size, d_model=hf.d_model, n_encoder_layer=hf.encoder_layers,
                      n_decoder_layer=hf.decoder_layers, n_head=hf.encoder_attention_heads,
                      d_ff=hf.encoder_ffn_dim, max_len=hf.max_position_embeddings,
                      scale_embedding=hf.scale_embedding, activation=act, pad_id=hf.pad_token_id,
                      bos_id=hf.bos_token_id, eos_id=hf.eos_token_id,
                      decoder_start_id=hf.decoder_start_token_id)


def from_hf_state_dict(sd: dict[str, Tensor], cfg: BartConfig) -> Bart:
    """Our Bart holding the weights of an HF BartForConditionalGeneration state dict."""
    model = Bart(cfg)
    ours: dict[str, Tensor] = {}
    for name, w in sd.items():
        if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            continue                                    # tied to the shared table
        for pattern, repl in _HF_RENAMES:
            name = re.sub(pattern, repl, name)
        ours[name] = w
    model.load_state_dict(ours, strict=True)
    return model


def poisson_span_lengths(n_mask: int, lam: float = 3.0, generator: torch.Generator | None = None) -> list[int]:
    """Span lengths ℓ ~ Poisson(λ) drawn until they cover n_mask tokens (the last one cut to fit)."""
    lengths, total = [], 0
    while total < n_mask:   # draw in blocks (one call per ~n_mask/λ spans), then cut at the budget
        block = torch.poisson(torch.full((int((n_mask - total) / lam) + 8,), lam), generator=generator)
        for ell in block.long().tolist():
            lengths.append(min(ell, n_mask - total))
            total += lengths[-1]
            if total >= n_mask:
                break
    return lengths


def text_infill(ids: list[int], mask_id: int, mask_ratio: float = 0.3, lam: float = 3.0,
                generator: torch.Generator | None = None) -> tuple[list[int], list[tuple[int, int]]]:
    """-> (noised ids, spans [(start, length)] in the original). round(mask_ratio·n) tokens in
    Poisson(λ) spans, placed at random without overlap and with ≥ 1 kept token between spans;
    each span becomes one mask_id (a 0-length span inserts one)."""
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio {mask_ratio}; valid: in (0, 1)")
    n = len(ids)
    lengths = poisson_span_lengths(round(mask_ratio * n), lam, generator)
    n_keep, k = n - sum(lengths), len(lengths)
    free = n_keep - (k - 1)                    # kept tokens left after one between each pair of spans
    while free < 0:                            # too many spans for a short text: merge the shortest
        lengths.sort()
        lengths = [lengths[0] + lengths[1]] + lengths[2:]
        k -= 1
        free = n_keep - (k - 1)
    order = torch.randperm(k, generator=generator).tolist()
    lengths = [lengths[i] for i in order]
    # the free kept tokens split into k + 1 gaps (≥ 0 each): stars and bars
    bars = torch.randperm(free + k, generator=generator)[:k].sort().values.tolist()
    gaps = [b - a - 1 for a, b in zip([-1] + bars, bars + [free + k])]
    out, spans, pos = [], [], 0
    for i, ell in enumerate(lengths):
        gap = gaps[i] + (1 if i > 0 else 0)
        out.extend(ids[pos:pos + gap])
        pos += gap
        spans.append((pos, ell))
        out.append(mask_id)
        pos += ell
    out.extend(ids[pos:])
    return out, spans


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def permute_sentences(text: str, generator: torch.Generator | None = None) -> str:
    """Split at full stops (., !, ? followed by space) and shuffle the sentences."""
    sentences = [s for s in SENTENCE_END.split(text.strip()) if s]
    order = torch.randperm(len(sentences), generator=generator).tolist()
    return " ".join(sentences[i] for i in order)
