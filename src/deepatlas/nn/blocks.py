"""Transformer blocks: self-attention, optional cross-attention, feed-forward, residuals, norms.

Post-norm (Vaswani et al. 2017 §3.1, §5.4):  x = LayerNorm(x + Dropout(Sublayer(x)))
Pre-norm  (Xiong et al. 2020; GPT-2, LLaMA):  x = x + Dropout(Sublayer(LayerNorm(x)))
An encoder block has one attention sublayer; a decoder block adds cross-attention over the
encoder output ("memory") between its causal self-attention and its feed-forward.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from deepatlas.nn.attention import KVCache, MultiHeadAttention
from deepatlas.nn.ffn import FeedForward
from deepatlas.nn.norms import LayerNorm, RMSNorm

NORMS = ("layernorm", "rmsnorm")


def make_norm(kind: str, dim: int, eps: float, bias: bool = True) -> nn.Module:
    """LayerNorm (with a bias unless bias=False, as torch's layers' `bias`) or RMSNorm (never one)."""
    if kind == "layernorm":
        return LayerNorm(dim, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")


class TransformerBlock(nn.Module):
    """(B, T, d_model) -> (B, T, d_model). cross_attention=True makes it a decoder block."""

    def __init__(self, d_model: int, n_head: int, d_ff: int, *, cross_attention: bool = False,
                 norm_first: bool = False, dropout: float = 0.0, activation: str = "relu",
                 norm: str = "layernorm", eps: float = 1e-5, bias: bool = True,
                 n_kv_head: int | None = None, rope: nn.Module | None = None, qk_norm: bool = False):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_head, n_kv_head, bias=bias, dropout=dropout, rope=rope,
                                            qk_norm=qk_norm)
        self.norm1 = make_norm(norm, d_model, eps, bias)
        self.cross_attn = self.norm_cross = None
        if cross_attention:
            self.cross_attn = MultiHeadAttention(d_model, n_head, n_kv_head, bias=bias, dropout=dropout)
            self.norm_cross = make_norm(norm, d_model, eps, bias)
        self.ffn = FeedForward(d_model, d_ff, activation, bias=bias, dropout=dropout)
        self.norm2 = make_norm(norm, d_model, eps, bias)
        self.dropout = nn.Dropout(dropout)

    def _residual(self, x: Tensor, norm: nn.Module, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        if self.norm_first:
            # x + Dropout(Sublayer(Norm(x)))
            return x + self.dropout(sublayer(norm(x)))
        # Norm(x + Dropout(Sublayer(x)))
        return norm(x + self.dropout(sublayer(x)))

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: Tensor | None = None,
                key_padding_mask: Tensor | None = None, causal: bool = False,
                memory_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
                cache: KVCache | None = None, layer: int = 0, pos: int = 0, fast: bool = True) -> Tensor:
        """Masks follow deepatlas.nn.attention (mask True = attend; *_key_padding_mask True = pad)."""
        x = self._residual(x, self.norm1, lambda h: self.self_attn(
            h, mask=mask, key_padding_mask=key_padding_mask, causal=causal,
            cache=cache, layer=layer, pos=pos, fast=fast))
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("a decoder block (cross_attention=True) needs `memory`")
            x = self._residual(x, self.norm_cross, lambda h: self.cross_attn(
                h, memory, mask=memory_mask, key_padding_mask=memory_key_padding_mask, fast=fast))
        return self._residual(x, self.norm2, self.ffn)
