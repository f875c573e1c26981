"""absmax / zero-point int8 round-trip bounds, and LLM.int8()'s vector-wise quantisation equal to
bitsandbytes' int8_vectorwise_quant bit for bit; the outlier decomposition beats plain int8."""
from __future__ import annotations

import warnings

import pytest
import torch

from deepatlas.quant.int8 import (Int8AbsmaxLinear, LLMInt8Linear, absmax_dequantize, absmax_quantize,
                                  llm_int8_matmul, vectorwise_quantize, zeropoint_dequantize, zeropoint_quantize)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bnbf = pytest.importorskip("bitsandbytes.functional")


@pytest.mark.parametrize("dim", [None, 0])
def test_absmax_and_zeropoint_round_trip_bounds(dim):
    torch.manual_seed(0)
    w = torch.randn(48, 64) * torch.linspace(0.1, 3, 48)[:, None]
    q, s = absmax_quantize(w, dim)
    assert q.dtype == torch.int8 and q.abs().max() == 127
    assert ((absmax_dequantize(q, s) - w).abs() <= s / 2 + 1e-7).all()          # |w − ŵ| ≤ s/2
    shifted = w.abs() + 0.5                                                      # all positive: zero-point pays off
    qz, sz, z = zeropoint_quantize(shifted, dim)
    assert ((zeropoint_dequantize(qz, sz, z) - shifted).abs() <= sz / 2 + 1e-6).all()
    qa, sa = absmax_quantize(shifted, dim)
    assert (zeropoint_dequantize(qz, sz, z) - shifted).abs().mean() < (absmax_dequantize(qa, sa) - shifted).abs().mean()


@pytest.mark.parametrize("threshold", [0.0, 3.0])
def test_vectorwise_equals_bitsandbytes(threshold):
    torch.manual_seed(1)
    x = torch.randn(16, 64).half()
    x[:, 5] *= 8                                                                 # an outlier feature
    q, c, cols = vectorwise_quantize(x, threshold)
    q_ref, c_ref, cols_ref = bnbf.int8_vectorwise_quant(x.clone(), threshold)
    assert torch.equal(q, q_ref) and torch.equal(c, c_ref)
    if threshold:
        assert torch.equal(cols, cols_ref.long()) and 5 in cols.tolist()


def test_llm_int8_outliers_keep_the_product_accurate():
    torch.manual_seed(2)
    x = torch.randn(32, 128)
    x[:, [3, 77]] *= 40                                                          # systematic outlier features
    w = torch.randn(64, 128) * 0.05
    exact = x @ w.T
    q_w, s_w = absmax_quantize(w, 0)
    plain = llm_int8_matmul(x, q_w, s_w.reshape(-1) * 127, threshold=0.0)       # int8 everywhere
    decomposed = llm_int8_matmul(x, q_w, s_w.reshape(-1) * 127, threshold=6.0)
    err = lambda y: float((y - exact).norm() / exact.norm())
    assert err(decomposed) < err(plain) / 3 and err(decomposed) < 0.02
    lin = torch.nn.Linear(128, 64)
    with torch.no_grad():
        lin.weight.copy_(w)
    torch.testing.assert_close(LLMInt8Linear(lin)(x), decomposed + lin.bias, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(Int8AbsmaxLinear(lin)(x), x @ absmax_dequantize(q_w, s_w).T + lin.bias)
