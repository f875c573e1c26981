"""Relative position information inside attention (map place L10): Shaw, T5 buckets, ALiBi.

Absolute tables (deepatlas.nn.positions) are added to the inputs; these act on the scores.

- Shaw, Uszkoreit & Vaswani 2018, eqs. (3)-(4): learned vectors for the clipped offset
      a^K_ij = w^K_clip(j−i, k),  a^V_ij = w^V_clip(j−i, k),  clip(x, k) = max(−k, min(k, x))
      e_ij = x_i W^Q (x_j W^K + a^K_ij)ᵀ / √d_z          z_i = Σ_j α_ij (x_j W^V + a^V_ij)
- T5 (Raffel et al. 2020 §2.1): one learned scalar per head and per *bucket* of the offset
  j − i, added to the logits; half the buckets are exact small offsets, the rest grow
  logarithmically up to max_distance (everything farther shares the last bucket):
      bucket(n) = n                                              if n < max_exact
                = max_exact + ⌊ln(n / max_exact) / ln(max_distance / max_exact) · (B − max_exact)⌋
  (B = buckets per direction; bidirectional attention spends half of them on each sign).
- ALiBi (Press, Smith & Lewis 2022 §3): no learned position parameters at all; head h adds
      −m_h · |i − j|,   m_h = 2^(−8h/n)  (h = 1..n), a geometric sequence of slopes
  (for n not a power of two: the slopes of the next lower power, then every other slope of
  the next higher one, as the paper's code and HF's BLOOM do).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def t5_relative_bucket(relative_position: Tensor, bidirectional: bool = True, num_buckets: int = 32,
                       max_distance: int = 128) -> Tensor:
    """relative_position = key − query (any shape, long) -> bucket ids in [0, num_buckets)."""
    if num_buckets < 4 or (bidirectional and num_buckets % 2):
        raise ValueError(f"num_buckets {num_buckets}; valid: ≥ 4 (and even when bidirectional)")
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets   # keys after the query
        n = relative_position.abs()
    else:
        n = (-relative_position).clamp(min=0)                              # only keys at or before
    max_exact = num_buckets // 2
    is_small = n < max_exact
    # max_exact + ⌊ln(n / max_exact) / ln(max_distance / max_exact) · (B − max_exact)⌋, capped at B − 1
    large = max_exact + (torch.log(n.float().clamp(min=1) / max_exact)
                         / math.log(max_distance / max_exact) * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, n, large)


class T5RelativeBias(nn.Module):
    """forward(T, S, offset) -> (1, H, T, S) logit bias; query i sits at absolute offset + i.

    `relative_attention_bias` is HF's name: an (num_buckets, n_head) table."""

    def __init__(self, n_head: int, num_buckets: int = 32, max_distance: int = 128,
                 bidirectional: bool = True):
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.relative_attention_bias = nn.Embedding(num_buckets, n_head)

    def forward(self, T: int, S: int, offset: int = 0) -> Tensor:
        device = self.relative_attention_bias.weight.device
        query = torch.arange(T, device=device)[:, None] + offset              # (T, 1)
        key = torch.arange(S, device=device)[None, :]                         # (1, S)
        bucket = t5_relative_bucket(key - query, self.bidirectional, self.num_buckets,
                                    self.max_distance)                        # (T, S)
        return self.relative_attention_bias(bucket).permute(2, 0, 1)[None]    # (1, H, T, S)


def alibi_slopes(n_head: int) -> Tensor:
    """(n_head,) slopes m_h = 2^(−8h/n) (Press et al. 2022 §3, with their non-power-of-two rule)."""
    if n_head < 1:
        raise ValueError(f"n_head {n_head}; valid: ≥ 1")
    closest = 2 ** math.floor(math.log2(n_head))
    base = 2.0 ** (-8.0 / closest)
    slopes = [base ** h for h in range(1, closest + 1)]
    if closest < n_head:   # the odd-indexed slopes of 2·closest heads fill the rest
        extra = 2.0 ** (-4.0 / closest)
        slopes += [extra ** h for h in range(1, 2 * (n_head - closest), 2)]
    return torch.tensor(slopes)


def alibi_bias(n_head: int, T: int, S: int | None = None, offset: int | None = None) -> Tensor:
    """(1, H, T, S) bias −m_h · |i − j|; the T queries are the last T of S keys unless `offset`."""
    S = T if S is None else S
    offset = S - T if offset is None else offset
    query = torch.arange(T)[:, None] + offset
    distance = (query - torch.arange(S)[None, :]).abs().float()          # |i − j|, (T, S)
    return (-alibi_slopes(n_head)[:, None, None] * distance[None])[None]   # (1, H, T, S)


class ShawRelativePositions(nn.Module):
    """Attention with Shaw et al.'s relative key and value vectors for offsets clipped at ±k.

    forward(q, k, v, mask) with q (B, H, T, d), k and v (B, H, S, d) -> (B, H, T, d);
    `mask` follows deepatlas.nn.attention (bool True = attend, or float added to the scores)."""

    def __init__(self, head_dim: int, max_distance: int):
        super().__init__()
        if max_distance < 1:
            raise ValueError(f"max_distance {max_distance}; valid: ≥ 1")
        self.max_distance = max_distance
        self.key_table = nn.Parameter(torch.randn(2 * max_distance + 1, head_dim) * 0.02)    # w^K
        self.value_table = nn.Parameter(torch.randn(2 * max_distance + 1, head_dim) * 0.02)  # w^V

    def index(self, T: int, S: int, offset: int | None = None) -> Tensor:
        """(T, S) rows of the tables: clip(j − i, k) + k."""
        offset = S - T if offset is None else offset
        rel = torch.arange(S)[None, :] - (torch.arange(T)[:, None] + offset)
        return rel.clamp(-self.max_distance, self.max_distance) + self.max_distance

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        T, S = q.size(-2), k.size(-2)
        idx = self.index(T, S).to(q.device)
        a_k, a_v = self.key_table[idx], self.value_table[idx]               # (T, S, d) each
        # e_ij = q_i (k_j + a^K_ij)ᵀ / √d                                   (B, H, T, S)
        scores = (q @ k.transpose(-2, -1) + torch.einsum("bhtd,tsd->bhts", q, a_k)) / math.sqrt(q.size(-1))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        alpha = scores.softmax(dim=-1)
        # z_i = Σ_j α_ij (v_j + a^V_ij)                                      (B, H, T, d)
        return alpha @ v + torch.einsum("bhts,tsd->bhtd", alpha, a_v)
