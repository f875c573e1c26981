"""T5: the text-to-text encoder-decoder (Raffel et al. 2020; v1.1 changes) and span corruption (L9).

Differences from the Transformer of Vaswani et al. (deepatlas.models.transformer):
- no position embeddings: each stack's first layer learns a scalar bias per head and per
  relative-position bucket, shared by all its layers (deepatlas.nn.relative_positions.T5RelativeBias;
  bidirectional buckets in the encoder, causal ones in the decoder, none in cross-attention);
- pre-norm with RMS-style layer norm, no bias anywhere (y = x / √(mean x² + ε) · g);
- scores are q·k without the 1/√d scale (T5's initialisation absorbs it);
- v1.1: gated-GELU feed-forward  FFN(x) = (GELU_tanh(x W_0) ⊙ x W_1) W_o  (Shazeer 2020),
  an untied output layer; v1.0 ties it to the embedding and scales the decoder output by d^−½
  (HF 5 always ties and keeps the scale as `scale_decoder_outputs`; both are options here).

Span corruption (§3.1.4, "i.i.d. noise, replace spans"): 15% of the tokens, in spans of mean
length 3, are each replaced in the input by one sentinel <extra_id_i>; the target lists
each sentinel followed by the span it stands for, and ends with one last sentinel.
Equal to HF's T5ForConditionalGeneration on copied weights (tests/models/test_t5.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.nn.attention import scaled_dot_product
from deepatlas.nn.ffn import activate
from deepatlas.nn.masks import causal_mask, merge_masks, padding_to_keep
from deepatlas.nn.norms import RMSNorm
from deepatlas.nn.relative_positions import T5RelativeBias


@dataclass
class T5Config:
    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 1024
    n_layer: int = 8
    n_decoder_layer: int | None = None   # None = n_layer
    n_head: int = 6
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6
    gated: bool = True                   # v1.1 gated-GELU; False = v1.0 ReLU FFN
    tie_embeddings: bool = False         # output layer = the embedding table
    scale_output: bool = False           # v1.0 scales the decoder output by d^-1/2 (v1.1 does not)
    dropout: float = 0.0
    pad_id: int = 0
    decoder_start_id: int = 0            # T5 starts the decoder with the pad token


class T5Attention(nn.Module):
    """q, k, v, o without bias; scores q·kᵀ + position bias, no 1/√d (scale = 1)."""

    def __init__(self, d_model: int, n_head: int, d_kv: int, dropout: float = 0.0):
        super().__init__()
        self.n_head, self.d_kv, self.dropout = n_head, d_kv, dropout
        self.q = nn.Linear(d_model, n_head * d_kv, bias=False)
        self.k = nn.Linear(d_model, n_head * d_kv, bias=False)
        self.v = nn.Linear(d_model, n_head * d_kv, bias=False)
        self.o = nn.Linear(n_head * d_kv, d_model, bias=False)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        B, T, _ = x.shape
        src = x if context is None else context
        heads = lambda t: t.view(B, t.size(1), self.n_head, self.d_kv).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.q(x)), heads(self.k(src)), heads(self.v(src))             # (B, H, ·, d_kv)
        # softmax(q kᵀ + bias) v: scale 1                                               (B, H, T, d_kv)
        y = scaled_dot_product(q, k, v, mask=mask, scale=1.0,
                               dropout_p=self.dropout if self.training else 0.0)
        return self.o(y.transpose(1, 2).reshape(B, T, -1))


class T5FeedForward(nn.Module):
    """v1.1: (GELU_tanh(x W_0) ⊙ x W_1) W_o;  v1.0: ReLU(x W_i) W_o (HF names wi_0/wi_1/wi, wo)."""

    def __init__(self, d_model: int, d_ff: int, gated: bool, dropout: float = 0.0):
        super().__init__()
        self.gated = gated
        if gated:
            self.wi_0 = nn.Linear(d_model, d_ff, bias=False)
            self.wi_1 = nn.Linear(d_model, d_ff, bias=False)
        else:
            self.wi = nn.Linear(d_model, d_ff, bias=False)
        self.wo = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = activate(self.wi_0(x), "gelu_tanh") * self.wi_1(x) if self.gated else F.relu(self.wi(x))
        return self.wo(self.dropout(h))


class T5Layer(nn.Module):
    """Pre-norm: x + Attn(RMS(x)) [+ x + Cross(RMS(x), memory)] + x + FFN(RMS(x))."""

    def __init__(self, cfg: T5Config, cross: bool):
        super().__init__()
        self.self_attn = T5Attention(cfg.d_model, cfg.n_head, cfg.d_kv, cfg.dropout)
        self.norm1 = RMSNorm(cfg.d_model, cfg.eps)
        self.cross_attn = T5Attention(cfg.d_model, cfg.n_head, cfg.d_kv, cfg.dropout) if cross else None
        self.norm_cross = RMSNorm(cfg.d_model, cfg.eps) if cross else None
        self.ffn = T5FeedForward(cfg.d_model, cfg.d_ff, cfg.gated, cfg.dropout)
        self.norm2 = RMSNorm(cfg.d_model, cfg.eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, self_mask: Tensor, memory: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop(self.self_attn(self.norm1(x), mask=self_mask))
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn(self.norm_cross(x), memory, mask=memory_mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class Seq2SeqLM(nn.Module):
    """Teacher forcing and greedy decoding shared by T5 and BART: subclasses have cfg
    (decoder_start_id, pad_id), encode(ids, mask) -> (memory, memory mask) and decode(ids, memory, mask)."""

    def shift_right(self, labels: Tensor) -> Tensor:
        """decoder inputs = [start] + labels[:-1]  (ignored labels −100 become pads)."""
        start = torch.full_like(labels[:, :1], self.cfg.decoder_start_id)
        shifted = torch.cat([start, labels[:, :-1]], dim=1)
        return shifted.masked_fill(shifted == -100, self.cfg.pad_id)

    def loss(self, input_ids: Tensor, labels: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Mean cross-entropy of labels (B, T) (−100 ignored) under teacher forcing."""
        logits = self(input_ids, self.shift_right(labels), attention_mask)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    @torch.no_grad()
    def greedy(self, input_ids: Tensor, max_len: int, eos_id: int | None = None) -> Tensor:
        """Greedy decoding (recomputing the prefix) -> (B, ≤ max_len) new tokens."""
        memory, keep = self.encode(input_ids)
        out = torch.full((input_ids.size(0), 1), self.cfg.decoder_start_id, dtype=torch.long,
                         device=input_ids.device)
        for _ in range(max_len):
            nxt = self.decode(out, memory, keep)[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            if eos_id is not None and bool((out == eos_id).any(1).all()):
                break
        return out[:, 1:]


class T5(Seq2SeqLM):
    """forward(input_ids (B, S), decoder_input_ids (B, T), attention_mask (B, S) True = real)
    -> logits (B, T, vocab)."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.cfg = cfg
        n_dec = cfg.n_layer if cfg.n_decoder_layer is None else cfg.n_decoder_layer
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder_bias = T5RelativeBias(cfg.n_head, cfg.num_buckets, cfg.max_distance, bidirectional=True)
        self.decoder_bias = T5RelativeBias(cfg.n_head, cfg.num_buckets, cfg.max_distance, bidirectional=False)
        self.encoder = nn.ModuleList(T5Layer(cfg, cross=False) for _ in range(cfg.n_layer))
        self.decoder = nn.ModuleList(T5Layer(cfg, cross=True) for _ in range(n_dec))
        self.encoder_norm = RMSNorm(cfg.d_model, cfg.eps)
        self.decoder_norm = RMSNorm(cfg.d_model, cfg.eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.shared.weight
        nn.init.normal_(self.shared.weight, std=1.0)   # T5: unit-variance embeddings (no √d scaling)
        for name, p in self.named_parameters():
            if p.dim() == 2 and "shared" not in name and "relative_attention_bias" not in name:
                nn.init.normal_(p, std=p.size(1) ** -0.5)

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> memory (B, S, d), the key mask (B, 1, 1, S) bool or None."""
        S = input_ids.size(1)
        keep = None if attention_mask is None else padding_to_keep(~attention_mask.bool())
        # one bias (1, H, S, S) for every layer, plus the padding mask
        mask = merge_masks(self.encoder_bias(S, S), keep)
        x = self.drop(self.shared(input_ids))
        for layer in self.encoder:
            x = layer(x, mask)
        return self.drop(self.encoder_norm(x)), keep

    def decode(self, decoder_input_ids: Tensor, memory: Tensor, memory_keep: Tensor | None) -> Tensor:
        T = decoder_input_ids.size(1)
        mask = merge_masks(self.decoder_bias(T, T), causal_mask(T, T, decoder_input_ids.device))
        x = self.drop(self.shared(decoder_input_ids))
        for layer in self.decoder:
            x = layer(x, mask, memory, memory_keep)
        x = self.drop(self.decoder_norm(x))
        if self.cfg.scale_output:
            x = x * self.cfg.d_model ** -0.5     # v1.0: rescale before the tied output layer
        return self.lm_head(x)

    def forward(self, input_ids: Tensor, decoder_input_ids: Tensor,
                attention_mask: Tensor | None = None) -> Tensor:
        memory, keep = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, memory, keep)


# HF T5 names -> ours (block i, layer j of HF's T5Block)
_HF_RENAMES = [
    (r"encoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.", "encoder_bias.relative_attention_bias."),
    (r"decoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.", "decoder_bias.relative_attention_bias."),
    (r"(encoder|decoder)\.block\.(\d+)\.layer\.0\.SelfAttention\.", r"\1.\2.self_attn."),
    (r"(encoder|decoder)\.block\.(\d+)\.layer\.0\.layer_norm\.", r"\1.\2.norm1."),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.", r"encoder.\1.ffn."),
    (r"encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"encoder.\1.norm2."),
    (r"decoder\.block\.(\d+)\.layer\.1\.EncDecAttention\.", r"decoder.\1.cross_attn."),
    (r"decoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"decoder.\1.norm_cross."),
    (r"decoder\.block\.(\d+)\.layer\.2\.DenseReluDense\.", r"decoder.\1.ffn."),
    (r"decoder\.block\.(\d+)\.layer\.2\.layer_norm\.", r"decoder.\1.norm2."),
    (r"(encoder|decoder)\.final_layer_norm\.", r"\1_norm."),
]


def config_from_hf(hf) -> T5Config:
    """A T5Config from a transformers T5Config (object or dict)."""
    get = hf.get if isinstance(hf, dict) else lambda k, d=None: getattr(hf, k, d)
    act = get("feed_forward_proj", "relu")
    if act not in ("relu", "gated-gelu"):
        raise ValueError(f"feed_forward_proj {act!r}; valid: relu (v1.0), gated-gelu (v1.1)")
    return T5Config(vocab_size=get("vocab_size"), d_model=get("d_model"), d_kv=get("d_kv"),
                    d_ff=get("d_ff"), n_layer=get("num_layers"), n_decoder_layer=get("num_decoder_layers"),
                    n_head=get("num_heads"), num_buckets=get("relative_attention_num_buckets"),
                    max_distance=get("relative_attention_max_distance"), eps=get("layer_norm_epsilon"),
                    gated=act == "gated-gelu", tie_embeddings=bool(get("tie_word_embeddings", False)),
                    scale_output=bool(get("scale_decoder_outputs", get("tie_word_embeddings", False))),
                    pad_id=get("pad_token_id", 0), decoder_start_id=get("decoder_start_token_id", 0))


def from_hf_state_dict(sd: dict[str, Tensor], cfg: T5Config) -> T5:
    """Our T5 holding the weights of an HF T5ForConditionalGeneration state dict."""
    model = T5(cfg)
    ours: dict[str, Tensor] = {}
    for name, w in sd.items():
        if name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            continue                                 # tied to shared.weight
        for pattern, repl in _HF_RENAMES:
            name = re.sub("^" + pattern, repl, name)
        ours[name] = w
    if cfg.tie_embeddings:
        ours["lm_head.weight"] = ours["shared.weight"]
    model.load_state_dict(ours, strict=True)
    return model


def sentinel_id(i: int, vocab_size: int) -> int:
    """<extra_id_i>: T5's sentinels are the last ids of the vocabulary, counting down."""
    return vocab_size - 1 - i


def random_spans_mask(length: int, noise_density: float = 0.15, mean_span: float = 3.0,
                      generator: torch.Generator | None = None) -> Tensor:
    """(length,) bool, True = corrupted; round(density·length) noise tokens in
    round(noise / mean_span) spans, noise and non-noise run lengths each a random composition
    (the T5 codebase's random_spans_noise_mask). The sequence starts with a non-noise run."""
    if not 0.0 < noise_density < 1.0 or mean_span < 1.0:
        raise ValueError(f"noise_density {noise_density} (valid: in (0, 1)), mean_span {mean_span} (valid: ≥ 1)")
    n_noise = min(max(round(length * noise_density), 1), length - 1)
    n_keep = length - n_noise
    n_spans = min(max(round(n_noise / mean_span), 1), n_keep)

    def composition(total: int, parts: int) -> Tensor:
        # split `total` items into `parts` runs of length ≥ 1, uniformly among compositions
        cuts = torch.randperm(total - 1, generator=generator)[:parts - 1] + 1
        bounds = torch.cat([torch.tensor([0]), cuts.sort().values, torch.tensor([total])])
        return bounds.diff()

    noise, keep = composition(n_noise, n_spans), composition(n_keep, n_spans)
    runs = torch.stack([keep, noise], dim=1).flatten()        # keep, noise, keep, noise, ...
    flags = torch.tensor([False, True]).repeat(n_spans)
    return flags.repeat_interleave(runs)


def span_corrupt(ids: list[int], vocab_size: int, noise_density: float = 0.15, mean_span: float = 3.0,
                 generator: torch.Generator | None = None, eos_id: int | None = None
                 ) -> tuple[list[int], list[int]]:
    """(inputs, targets): each noise span -> one sentinel in the input; targets = sentinel + span
    for each span, then a final sentinel (and eos_id on both if given)."""
    if len(ids) < 2:
        raise ValueError(f"span corruption needs ≥ 2 tokens, got {len(ids)}")
    noise = random_spans_mask(len(ids), noise_density, mean_span, generator).tolist()
    inputs, targets, span = [], [], -1
    for i, (tok, is_noise) in enumerate(zip(ids, noise)):
        if is_noise:
            if i == 0 or not noise[i - 1]:                   # a span starts: its sentinel
                span += 1
                inputs.append(sentinel_id(span, vocab_size))
                targets.append(sentinel_id(span, vocab_size))
            targets.append(tok)
        else:
            inputs.append(tok)
    targets.append(sentinel_id(span + 1, vocab_size))
    if eos_id is not None:
        inputs.append(eos_id)
        targets.append(eos_id)
    return inputs, targets


def uncorrupt(inputs: list[int], targets: list[int], vocab_size: int, n_sentinels: int = 100) -> list[int]:
    """Put each span of `targets` back in place of its sentinel in `inputs` (span_corrupt's inverse)."""
    first = vocab_size - n_sentinels
    spans: dict[int, list[int]] = {}
    current = None
    for tok in targets:
        if tok >= first:
            current = tok
            spans[current] = []
        elif current is not None:
            spans[current].append(tok)
    out: list[int] = []
    for tok in inputs:
        out.extend(spans.get(tok, []) if tok >= first else [tok])
    return out
