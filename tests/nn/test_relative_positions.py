"""T5 buckets equal HF's; ALiBi slopes equal the paper's and BLOOM's; Shaw equals its equations."""
import math

import pytest
import torch

from deepatlas.nn.relative_positions import (ShawRelativePositions, T5RelativeBias, alibi_bias,
                                             alibi_slopes, t5_relative_bucket)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_buckets_equal_hf(bidirectional):
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = torch.arange(-300, 300)
    ref = T5Attention._relative_position_bucket(rel, bidirectional, 32, 128)
    assert torch.equal(t5_relative_bucket(rel, bidirectional, 32, 128), ref)
    got = t5_relative_bucket(rel, bidirectional, 32, 128)
    assert got.max() < 32 and got.min() >= 0
    # exact buckets for small offsets, one shared bucket far away
    if bidirectional:
        assert got[300 + 3] != got[300 + 4] and got[300 + 200] == got[300 + 299]
    else:
        assert got[300 - 3] == 3 and got[300 + 5] == 0 and got[0] == got[50] == 31


def test_t5_bias_shape_and_offset():
    torch.manual_seed(0)
    bias = T5RelativeBias(n_head=3, num_buckets=8, max_distance=16, bidirectional=False)
    full = bias(10, 10)
    assert full.shape == (1, 3, 10, 10)
    torch.testing.assert_close(bias(2, 10, offset=8), full[:, :, 8:])


def test_alibi_slopes_equal_paper_and_bloom():
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    for n in (4, 6, 12):
        mask = torch.ones(1, 5)
        ref = build_alibi_tensor(mask, n, torch.float32).view(n, 5)   # slope_h · key position
        torch.testing.assert_close(alibi_slopes(n) * 4, ref[:, 4])
    b = alibi_bias(4, 5)
    assert b.shape == (1, 4, 5, 5)
    assert b[0, 0, 4, 1].item() == pytest.approx(-0.25 * 3)          # −m_1 · |4 − 1|, m_1 = 2^-2


def test_shaw_equals_its_equations_and_clips():
    torch.manual_seed(0)
    B, H, T, d, k = 1, 2, 6, 4, 2
    shaw = ShawRelativePositions(d, k).double()
    q, kk, v = (torch.randn(B, H, T, d, dtype=torch.float64) for _ in range(3))
    got = shaw(q, kk, v)
    ref = torch.zeros_like(got)
    for h in range(H):
        for i in range(T):
            e = torch.stack([q[0, h, i] @ (kk[0, h, j] + shaw.key_table[max(-k, min(k, j - i)) + k])
                             for j in range(T)]) / math.sqrt(d)
            a = e.softmax(0)
            ref[0, h, i] = sum(a[j] * (v[0, h, j] + shaw.value_table[max(-k, min(k, j - i)) + k])
                               for j in range(T))
    torch.testing.assert_close(got, ref)
    idx = shaw.index(T, T)
    assert idx[0, 5] == idx[0, 4] == 2 * k                            # offsets beyond k share a row
