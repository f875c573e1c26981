"""Sparse attention patterns checked against explicit masks and their limiting cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepatlas.nn.attention import MultiHeadAttention
from deepatlas.nn.sparse_attention import (NSAttention, TalkingHeadsAttention, attended_fraction,
                                           is_global_layer, moba_attention, moba_mask,
                                           sliding_window_attention, sliding_window_mask)


def _qkv(T=24, H=2, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, H, T, d, generator=g, dtype=torch.float64) for _ in range(3)]


def test_sliding_window_mask_by_hand_and_limits():
    keep = sliding_window_mask(5, 2)
    expected = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0],
                             [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(keep, expected)
    q, k, v = _qkv()
    # a window as long as the sequence is full causal attention
    torch.testing.assert_close(sliding_window_attention(q, k, v, 24),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert attended_fraction(sliding_window_mask(100, 10)) == pytest.approx(955 / 5050)


def test_moba_selects_own_block_and_the_best_earlier_blocks():
    q, k, v = _qkv(T=32)
    keep = moba_mask(q, k, block=8, top_k=2)                       # (1, H, 32, 32)
    t = 29                                                          # block 3
    gate = [float(q[0, 0, t] @ k[0, 0, 8 * i:8 * i + 8].mean(0)) for i in range(3)]
    best = max(range(3), key=lambda i: gate[i])
    expected = torch.zeros(32, dtype=torch.bool)
    expected[8 * best:8 * best + 8] = True
    expected[24:t + 1] = True
    assert torch.equal(keep[0, 0, t], expected)
    # top_k = all blocks is full causal attention
    torch.testing.assert_close(moba_attention(q, k, v, block=8, top_k=4),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_nsa_gates_and_branches():
    torch.manual_seed(0)
    nsa = NSAttention(head_dim=8, block=4, top_n=2, window=6).double()
    q, k, v = _qkv(T=20)
    _, cmp_keep, slc_keep, win_keep, _ = nsa.branch_masks(q, k)
    assert not cmp_keep[2].any() and cmp_keep[3, 0] and not cmp_keep[6, 1] and cmp_keep[7, 1]
    assert (slc_keep <= torch.ones(20, 20, dtype=torch.bool).tril()).all()   # causal
    # each query keeps at most top_n selected blocks + its own block
    assert int(slc_keep.sum(-1).max()) <= 4 * 3
    # gates at 1/0 pick one branch: sliding-window only
    with torch.no_grad():
        nsa.gate.weight.zero_()
        nsa.gate.bias.copy_(torch.tensor([-1e4, -1e4, 1e4]))
    torch.testing.assert_close(nsa(q, k, v), sliding_window_attention(q, k, v, 6))


def test_talking_heads_identity_is_multi_head_and_mixing_matters():
    th = TalkingHeadsAttention(2).double()
    q, k, v = _qkv()
    torch.testing.assert_close(th(q, k, v), F.scaled_dot_product_attention(q, k, v, is_causal=True))
    with torch.no_grad():
        th.weight_mix.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))   # swap the heads' weights
    w = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(
        ~torch.ones(24, 24, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
    torch.testing.assert_close(th(q, k, v)[:, 0], (w[:, 1] @ v[:, 0]))


def test_hybrid_layers_and_attend_hook():
    assert [is_global_layer(i, 6) for i in range(12)].count(True) == 2
    assert is_global_layer(5, 6) and not is_global_layer(4, 6)
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2, attend=lambda q, k, v: sliding_window_attention(q, k, v, 50))
    x = torch.randn(2, 10, 16)
    plain = mha.attend
    mha.attend = None
    full = mha(x, causal=True)
    mha.attend = plain
    torch.testing.assert_close(mha(x, causal=True), full, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="causal self-attention only"):
        mha(x)
