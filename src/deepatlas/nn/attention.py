"""Scaled dot-product and multi-head attention, with grouped-query heads and a KV cache.

Vaswani et al. 2017 ("Attention is all you need"):
    eq. (1)  Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V
    §3.2.2   MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,
             head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
Grouped-query attention (Ainslie et al. 2023): n_kv_head < n_head key/value heads, each shared
by n_head / n_kv_head query heads (n_kv_head = 1 is multi-query attention, Shazeer 2019).

Mask conventions (the same as F.scaled_dot_product_attention):
    mask: bool, True = may attend; or float, added to the scores (-inf blocks).
    key_padding_mask (MultiHeadAttention only, torch.nn.MultiheadAttention's name and meaning):
          bool (B, S), True = this key is padding and is ignored.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.nn.masks import causal_mask, merge_masks, padding_to_keep
from deepatlas.nn.norms import RMSNorm


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """(B, n_kv, S, hd) -> (B, n_kv * n_rep, S, hd): each kv head serves n_rep query heads (GQA)."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def scaled_dot_product(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                       causal: bool = False, fast: bool = True, dropout_p: float = 0.0,
                       scale: float | None = None) -> Tensor:
    """q: (B, H, T, hd), k and v: (B, H_kv, S, hd) with H % H_kv == 0 -> (B, H, T, hd).

    With a KV cache the T queries are the LAST T of the S positions, so the causal mask is
    tril(S - T): query i (absolute position S - T + i) sees keys j ≤ S - T + i.
    `fast` uses the fused F.scaled_dot_product_attention; the plain path below is the equation.
    """
    H, H_kv = q.size(-3), k.size(-3)
    if H % H_kv != 0:
        raise ValueError(f"query heads {H} must be a multiple of key/value heads {H_kv}")
    T, S = q.size(-2), k.size(-2)
    if causal and T == 1:   # one query, the last position: tril(S - 1) of one row keeps every key
        causal = False
    if fast and causal and mask is None and T == S:  # the kernel's own causal path (no mask tensor)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True,
                                              scale=scale, enable_gqa=H != H_kv)
    if causal:
        mask = merge_masks(mask, causal_mask(T, S, q.device), q.dtype)
    if fast:  # fused kernel; equal to the plain path (tests/nn/test_attention.py)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                              scale=scale, enable_gqa=H != H_kv)
    k, v = repeat_kv(k, H // H_kv), repeat_kv(v, H // H_kv)      # (B, H, S, hd)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    # eq. (1): scores = Q Kᵀ / √d_k                                 (B, H, T, S)
    scores = (q @ k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    # softmax over the keys                                          (B, H, T, S)
    weights = scores.softmax(dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    # weighted sum of the values                                     (B, H, T, hd)
    return weights @ v


class KVCache:
    """Preallocated keys/values of every layer: tensors (B, n_kv_head, max_len, hd).

    `update(layer, k, v, pos)` writes the T new positions at pos..pos+T-1 and returns views of
    positions 0..pos+T-1, so generating one token costs one new row, not a recomputation.
    """

    def __init__(self, n_layer: int, batch: int, n_kv_head: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        shape = (batch, n_kv_head, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.lengths = [0] * n_layer
        self.max_len = max_len

    @property
    def length(self) -> int:
        """Positions held (by layer 0; all layers agree after a full forward pass)."""
        return self.lengths[0]

    def update(self, layer: int, k: Tensor, v: Tensor, pos: int) -> tuple[Tensor, Tensor]:
        """k, v: (B, n_kv_head, T, hd) at positions pos..pos+T-1 -> all keys, values (B, n_kv, pos+T, hd)."""
        T = k.size(-2)
        if pos + T > self.max_len:
            raise ValueError(f"KV cache full: position {pos} + {T} new > max_len {self.max_len}")
        if pos > self.lengths[layer]:
            raise ValueError(f"layer {layer} holds {self.lengths[layer]} positions; cannot write at {pos}")
        B = k.size(0)
        self.k[layer][:B, :, pos:pos + T] = k
        self.v[layer][:B, :, pos:pos + T] = v
        self.lengths[layer] = pos + T
        return self.k[layer][:B, :, :pos + T], self.v[layer][:B, :, :pos + T]

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """update() at the end of what `layer` holds."""
        return self.update(layer, k, v, self.lengths[layer])

    def reset(self) -> None:
        self.lengths = [0] * len(self.lengths)

    def crop(self, length: int) -> None:
        """Forget positions ≥ length (e.g. rejected speculative tokens)."""
        if length < 0:
            raise ValueError(f"crop length must be ≥ 0, got {length}")
        self.lengths = [min(n, length) for n in self.lengths]

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` (beam search: the surviving beams' histories)."""
        for i in range(len(self.k)):
            self.k[i][: index.numel()] = self.k[i].index_select(0, index)
            self.v[i][: index.numel()] = self.v[i].index_select(0, index)


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with separate q/k/v/o projections (§3.2.2).

    x: (B, T, d_model) queries; context: (B, S, context_dim) keys/values source (None = self).
    n_kv_head < n_head gives grouped-query attention; `rope` rotates q and k (self-attention).
    qk_norm=True RMS-normalises each head's q and k before the dot product (Henry et al. 2020
    "Query-Key Normalization"; OLMo 2, Qwen3): the logits q·k/√d stay bounded whatever the
    weights' scale, which lets training use larger learning rates.
    """

    def __init__(self, d_model: int, n_head: int, n_kv_head: int | None = None, bias: bool = True,
                 dropout: float = 0.0, rope: nn.Module | None = None, head_dim: int | None = None,
                 context_dim: int | None = None, attend: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
                 qk_norm: bool = False):
        super().__init__()
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        if head_dim is None and d_model % n_head != 0:
            raise ValueError(f"d_model {d_model} is not divisible by n_head {n_head}")
        if n_head % n_kv_head != 0:
            raise ValueError(f"n_head {n_head} must be a multiple of n_kv_head {n_kv_head}")
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.head_dim = head_dim or d_model // n_head
        context_dim = context_dim or d_model
        self.q_proj = nn.Linear(d_model, n_head * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(context_dim, n_kv_head * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(context_dim, n_kv_head * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(n_head * self.head_dim, d_model, bias=bias)
        self.dropout = dropout
        self.rope = rope
        # q ← RMSNorm(q), k ← RMSNorm(k) over each head's hd features, learned gains
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else None
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else None
        # attend(q, k, v) -> y replaces causal softmax attention (sparse / linear forms, A5):
        # (B, nh, T, hd) each; causal self-attention only, no mask, no cache
        self.attend = attend

    # Self-attention's q, k, v read the same x: one matmul x [W_q | W_k | W_v]ᵀ does all three,
    # forward and backward (one GEMM instead of three, and dL/dx without summing three products).
    # The weights stay separate parameters (q_proj/k_proj/v_proj: HF and Llama names load as
    # they are); the concatenation is made at each call, which pays off once the rows of x
    # (B·T) are many — training, long prompts — and not in one-token decoding, where copying
    # the weights would cost as much as reading them.
    FUSE_QKV_MIN_ROWS = 64

    def _fuse_qkv(self, rows: int) -> bool:
        projs = (self.q_proj, self.k_proj, self.v_proj)
        return (rows >= self.FUSE_QKV_MIN_ROWS and all(type(p) is nn.Linear for p in projs)
                and len({p.bias is None for p in projs}) == 1)

    def _qkv_fused(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, d) -> q (B, T, nh·hd), k and v (B, T, nkv·hd), with one matmul."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        w = torch.cat([p.weight for p in projs])                          # ((nh + 2 nkv)·hd, d)
        b = None if self.q_proj.bias is None else torch.cat([p.bias for p in projs])
        kv = self.n_kv_head * self.head_dim
        return F.linear(x, w, b).split([self.n_head * self.head_dim, kv, kv], dim=-1)

    def _heads(self, x: Tensor, n: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n, self.head_dim).transpose(1, 2)          # (B, n, T, hd)

    def forward(self, x: Tensor, context: Tensor | None = None, *, mask: Tensor | None = None,
                key_padding_mask: Tensor | None = None, causal: bool = False,
                cache: KVCache | None = None, layer: int = 0, pos: int = 0,
                fast: bool = True) -> Tensor:
        """-> (B, T, d_model). With `cache`, x holds positions pos..pos+T-1 of the sequence."""
        B, T, _ = x.shape
        if cache is not None and context is not None:
            raise ValueError("the KV cache holds self-attention keys; cross-attention (context) takes no cache")
        if context is None and self._fuse_qkv(B * T):
            q, k, v = self._qkv_fused(x)
        else:
            src = x if context is None else context
            q, k, v = self.q_proj(x), self.k_proj(src), self.v_proj(src)
        q = self._heads(q, self.n_head)                                 # (B, nh, T, hd)
        k = self._heads(k, self.n_kv_head)                              # (B, nkv, S, hd)
        v = self._heads(v, self.n_kv_head)                              # (B, nkv, S, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            q, k = self.rope(q, k, offset=pos)
        if cache is not None:
            k, v = cache.update(layer, k, v, pos)                       # (B, nkv, pos+T, hd)
        if key_padding_mask is not None:
            mask = merge_masks(mask, padding_to_keep(key_padding_mask), q.dtype)
        if self.attend is not None:
            if not causal or mask is not None or cache is not None or context is not None:
                raise ValueError("a custom `attend` does causal self-attention only (causal=True, "
                                 "no mask, no key padding, no cache, no context)")
            y = self.attend(q, repeat_kv(k, self.n_head // self.n_kv_head),
                            repeat_kv(v, self.n_head // self.n_kv_head))
        else:
            y = scaled_dot_product(q, k, v, mask=mask, causal=causal, fast=fast,
                                   dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, nh*hd)
        return self.o_proj(y)
