"""The encoder-decoder Transformer of Vaswani et al. 2017 ("Attention is all you need").

Post-norm blocks (§3.1), sinusoidal positions (§3.5), embeddings scaled by √d_model and
optionally shared between source, target and the output projection (§3.4), label-smoothed
cross-entropy (§5.4, Szegedy et al. 2016) and the warmup-then-1/√step learning rate (eq. 3,
deepatlas.core.schedules.inverse_sqrt). Decoding: deepatlas.generation.beam.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from deepatlas.generation.beam import Hypothesis, beam_decode, make_step
from deepatlas.nn.attention import KVCache
from deepatlas.nn.blocks import TransformerBlock, make_norm
from deepatlas.nn.positions import SinusoidalPositions


@dataclass
class TransformerConfig:
    src_vocab: int
    tgt_vocab: int
    d_model: int = 512
    n_head: int = 8
    n_encoder_layer: int = 6
    n_decoder_layer: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    max_len: int = 512
    share_embeddings: bool = False  # one table for source, target and output (needs one vocab)
    tie_output: bool = True         # output projection = target embedding table (§3.4)
    norm_first: bool = False        # False: the paper's post-norm
    activation: str = "relu"
    pad_id: int = 0


def label_smoothed_cross_entropy(logits: Tensor, target: Tensor, smoothing: float = 0.1,
                                 ignore_index: int = -100) -> Tensor:
    """Mean over non-ignored targets of H(q', p) (Szegedy et al. 2016 §7).

    logits (N, V), target (N,). Equal to F.cross_entropy(label_smoothing=smoothing).
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    logp = logits.log_softmax(dim=-1)                               # (N, V)
    keep = target != ignore_index                                   # (N,)
    nll = -logp.gather(-1, target.clamp(min=0)[:, None]).squeeze(-1)  # -log p(y)
    uniform = -logp.mean(dim=-1)                                    # -(1/K) Σ_k log p(k)
    # q'(k) = (1 - ε) δ_{k,y} + ε / K   =>   H(q', p) = (1 - ε)(-log p(y)) + ε · (-(1/K) Σ_k log p(k))
    loss = (1.0 - smoothing) * nll + smoothing * uniform
    return loss[keep].sum() / keep.sum().clamp(min=1)


class Transformer(nn.Module):
    """forward(src (B, S), tgt_in (B, T)) -> logits (B, T, tgt_vocab); pads are cfg.pad_id."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        if cfg.share_embeddings and cfg.src_vocab != cfg.tgt_vocab:
            raise ValueError(f"share_embeddings needs src_vocab == tgt_vocab, got {cfg.src_vocab}, {cfg.tgt_vocab}")
        self.cfg = cfg
        self.tgt_embed = nn.Embedding(cfg.tgt_vocab, cfg.d_model)
        self.src_embed = self.tgt_embed if cfg.share_embeddings else nn.Embedding(cfg.src_vocab, cfg.d_model)
        for emb in {self.src_embed, self.tgt_embed}:  # N(0, d^-1/2): after the ×√d scale, unit variance
            nn.init.normal_(emb.weight, std=cfg.d_model ** -0.5)
        self.positions = SinusoidalPositions(cfg.d_model, cfg.max_len)
        self.dropout = nn.Dropout(cfg.dropout)
        block = dict(d_model=cfg.d_model, n_head=cfg.n_head, d_ff=cfg.d_ff, dropout=cfg.dropout,
                     norm_first=cfg.norm_first, activation=cfg.activation)
        self.encoder = nn.ModuleList(TransformerBlock(**block) for _ in range(cfg.n_encoder_layer))
        self.decoder = nn.ModuleList(TransformerBlock(**block, cross_attention=True)
                                     for _ in range(cfg.n_decoder_layer))
        # pre-norm stacks end with a norm (the last residual sum is un-normalised); post-norm do not
        self.encoder_norm = make_norm("layernorm", cfg.d_model, 1e-5) if cfg.norm_first else nn.Identity()
        self.decoder_norm = make_norm("layernorm", cfg.d_model, 1e-5) if cfg.norm_first else nn.Identity()
        self.out = nn.Linear(cfg.d_model, cfg.tgt_vocab, bias=False)
        if cfg.tie_output:
            self.out.weight = self.tgt_embed.weight

    def _embed(self, table: nn.Embedding, tokens: Tensor, offset: int = 0) -> Tensor:
        # §3.4: embeddings × √d_model, §3.5: + PE, then dropout      (B, T, d)
        x = table(tokens) * math.sqrt(self.cfg.d_model) + self.positions(tokens.size(1), offset)
        return self.dropout(x)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """src (B, S) -> memory (B, S, d), source padding mask (B, S) (True = pad)."""
        src_pad = src == self.cfg.pad_id
        x = self._embed(self.src_embed, src)
        for block in self.encoder:
            x = block(x, key_padding_mask=src_pad)
        return self.encoder_norm(x), src_pad

    def decode(self, tgt_in: Tensor, memory: Tensor, src_pad: Tensor,
               cache: KVCache | None = None) -> Tensor:
        """tgt_in (B, T) (BOS + target so far) -> logits (B, T, V), causal over the target.

        With `cache` (the decoder's self-attention keys/values of the cache.length earlier
        target positions) tgt_in holds the next T positions; cross-attention reads `memory`."""
        pos = cache.length if cache is not None else 0
        x = self._embed(self.tgt_embed, tgt_in, offset=pos)
        for i, block in enumerate(self.decoder):
            x = block(x, memory, causal=True, memory_key_padding_mask=src_pad, cache=cache, layer=i, pos=pos)
        return self.out(self.decoder_norm(x))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, src_pad = self.encode(src)
        return self.decode(tgt_in, memory, src_pad)

    def loss(self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor, smoothing: float = 0.1) -> Tensor:
        """Teacher forcing: predict tgt_out[t] from tgt_in[:t+1]; pads in tgt_out are ignored."""
        logits = self(src, tgt_in)
        return label_smoothed_cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), smoothing,
                                            ignore_index=self.cfg.pad_id)

    def _decode_search(self, src: Tensor, bos: int, eos: int, max_len: int, beams: int,
                       use_cache: bool, **options) -> list[list[int]]:
        """deepatlas.generation.beam.beam_decode from BOS -> the best output per source, without EOS.
        src may be on any device: it is moved to the model's (A3 on a GPU built its batches on the CPU)."""
        src = src.to(self.out.weight.device)
        memory, src_pad = self.encode(src)
        # row b·beams + k decodes src[b]: each source's memory repeated once for all its beams
        memory, src_pad = memory.repeat_interleave(beams, 0), src_pad.repeat_interleave(beams, 0)
        cfg, w = self.cfg, self.out.weight
        cache = KVCache(cfg.n_decoder_layer, src.size(0) * beams, cfg.n_head, max_len,
                        cfg.d_model // cfg.n_head, dtype=w.dtype, device=w.device) if use_cache else None
        step = make_step(lambda tokens, c: self.decode(tokens, memory, src_pad, cache=c), cache)
        start = torch.full((src.size(0), 1), bos, dtype=torch.long, device=src.device)
        return [_without_eos(hyps, eos) for hyps in beam_decode(step, start, beams, max_len, eos, **options)]

    @torch.no_grad()
    def greedy(self, src: Tensor, bos: int, eos: int, max_len: int, use_cache: bool = True) -> list[list[int]]:
        """Most likely next token at each step -> one token list per source (without BOS/EOS).

        Greedy decoding is beam search of width 1 without a length penalty."""
        return self._decode_search(src, bos, eos, max_len, 1, use_cache, length_penalty=0.0)

    @torch.no_grad()
    def beam(self, src: Tensor, bos: int, eos: int, max_len: int, beam_size: int = 4,
             length_penalty: float = 0.6, length_norm: str = "gnmt", use_cache: bool = True) -> list[list[int]]:
        """Beam search (GNMT length penalty by default, Wu et al. 2016) -> the best token list per source."""
        return self._decode_search(src, bos, eos, max_len, beam_size, use_cache,
                                   length_penalty=length_penalty, length_norm=length_norm)


def _without_eos(hyps: list[Hypothesis], eos: int) -> list[int]:
    tokens = hyps[0].tokens if hyps else []
    return tokens[:-1] if tokens[-1:] == [eos] else tokens
