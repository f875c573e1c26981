"""FlashAttention (tiled, online softmax, recomputing backward) equals SDPA in values and gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepatlas.nn.flash import PeakMemory, flash_attention


def _sdpa(q, k, v, causal, pad):
    T, S = q.size(-2), k.size(-2)
    keep = torch.ones(1, 1, T, S, dtype=torch.bool)
    if causal:
        keep = keep & torch.ones(T, S, dtype=torch.bool).tril(S - T)
    if pad is not None:
        keep = keep & ~pad[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                          enable_gqa=q.size(1) != k.size(1))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("T,S", [(37, 37), (9, 41)])
@pytest.mark.parametrize("padded", [False, True])
def test_values_and_gradients_equal_sdpa(causal, T, S, padded):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, T, 16, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 2, S, 16, generator=g, dtype=torch.float64, requires_grad=True)  # GQA
    v = torch.randn(2, 2, S, 16, generator=g, dtype=torch.float64, requires_grad=True)
    pad = None
    if padded:   # row 0 unpadded, row 1 left-padded by 3 keys (every query still sees a key)
        pad = torch.zeros(2, S, dtype=torch.bool)
        pad[1, :3] = True
    dout = torch.randn(2, 4, T, 16, generator=g, dtype=torch.float64)
    ours = flash_attention(q, k, v, causal=causal, key_padding_mask=pad, block_q=8, block_k=16)
    grads = torch.autograd.grad(ours, (q, k, v), dout)
    ref = _sdpa(q, k, v, causal, pad)
    ref_grads = torch.autograd.grad(ref, (q, k, v), dout)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_fp32_equals_sdpa_and_gradcheck():
    q, k, v = (torch.randn(1, 2, 70, 32) for _ in range(3))
    torch.testing.assert_close(flash_attention(q, k, v, causal=True, block_q=16, block_k=32),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               rtol=1e-5, atol=1e-5)
    small = [torch.randn(1, 1, 6, 4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(lambda a, b, c: flash_attention(a, b, c, causal=True, block_q=2,
                                                                    block_k=4), small)


def test_memory_is_linear_in_length_naive_is_quadratic():
    def peak(T, flash):
        q, k, v = (torch.randn(1, 1, T, 16, requires_grad=True) for _ in range(3))
        with PeakMemory() as pm:
            out = (flash_attention(q, k, v, causal=True, block_q=64, block_k=64) if flash else
                   (q @ k.transpose(-2, -1) / 4).masked_fill(
                       ~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")).softmax(-1) @ v)
            out.sum().backward()
        return pm.peak_bytes
    flash_growth = peak(1024, True) / peak(256, True)
    naive_growth = peak(1024, False) / peak(256, False)
    assert flash_growth < 4.5, flash_growth          # ×4 tokens: ≈ ×4 bytes
    assert naive_growth > 12, naive_growth           # ×4 tokens: ≈ ×16 bytes


def test_bad_inputs_named():
    q = torch.randn(1, 3, 4, 8)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        flash_attention(q, torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8))
    with pytest.raises(ValueError, match="key_padding_mask"):
        flash_attention(q, q, q, key_padding_mask=torch.zeros(1, 5, dtype=torch.bool))
