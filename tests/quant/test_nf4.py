"""NF4 equals bitsandbytes' quantize_4bit / dequantize_4bit (CPU) bit for bit: codes, scales
(plain and double-quantised), dequantised values; the NF4 levels from their definition; NF4Linear."""
from __future__ import annotations

import warnings

import pytest
import torch

from deepatlas.quant.nf4 import (DYNAMIC_CODE, NF4_CODE, NF4Linear, dequantize_nf4, dynamic_map, normal_map,
                                 quantize_blockwise_lut, quantize_nf4)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bnbf = pytest.importorskip("bitsandbytes.functional")


def _weights(shape, dtype, seed=0):
    torch.manual_seed(seed)
    w = (torch.randn(shape) * 0.05).to(dtype)
    w.view(-1)[3] = 0.7                                    # an outlier: its block's scale is large
    return w


def test_levels_from_their_definition():
    torch.testing.assert_close(normal_map(), NF4_CODE, atol=2e-7, rtol=0)   # Φ⁻¹ quantiles, normalised
    assert NF4_CODE[7] == 0 and NF4_CODE[0] == -1 and NF4_CODE[-1] == 1 and (NF4_CODE.diff() > 0).all()
    assert torch.equal(dynamic_map(), bnbf.create_dynamic_map())


@pytest.mark.parametrize("shape, blocksize, double, dtype", [
    ((64, 128), 64, True, torch.float32), ((333, 77), 64, True, torch.float32),      # a partial last block, odd n
    ((96, 1536), 64, True, torch.bfloat16), ((100, 300), 128, False, torch.float32),
    ((5, 7), 32, True, torch.float16)])
def test_equals_bitsandbytes_bit_for_bit(shape, blocksize, double, dtype):
    w = _weights(shape, dtype)
    packed, state = bnbf.quantize_4bit(w, blocksize=blocksize, compress_statistics=double, quant_type="nf4")
    ours = quantize_nf4(w, blocksize, double)
    assert torch.equal(ours.packed.reshape(-1), packed.reshape(-1))                  # the 4-bit codes
    if double:
        assert torch.equal(ours.qabsmax, state.absmax)                               # 8-bit scale codes
        assert torch.equal(ours.absmax2, state.state2.absmax) and ours.offset == float(state.offset)
    else:
        assert torch.equal(ours.absmax, state.absmax)
    ref = bnbf.dequantize_4bit(packed, state, quant_type="nf4")
    out = dequantize_nf4(ours)
    assert out.dtype == ref.dtype and torch.equal(out, ref)


def test_scale_quantiser_equals_bitsandbytes_blockwise():
    x = torch.rand(256 * 40 + 17) * 2 - 1
    q, state = bnbf.quantize_blockwise(x, blocksize=256)
    ours, absmax = quantize_blockwise_lut(x, DYNAMIC_CODE, 256)
    assert torch.equal(ours, q) and torch.equal(absmax, state.absmax)


def test_round_trip_error_bound_and_size():
    w = _weights((256, 512), torch.float32)
    t = quantize_nf4(w)
    err = (t.dequantize() - w).abs().reshape(-1, 64)
    c = w.abs().reshape(-1, 64).amax(1, keepdim=True)     # c_b; stored as ĉ_b (8-bit double quantisation)
    c_hat = t.scales()[:, None]
    # w = v c, ŵ = q ĉ with |v − q| ≤ half the widest gap, |q| ≤ 1:  |w − ŵ| ≤ c · gap/2 + |c − ĉ|
    bound = c * NF4_CODE.diff().max() / 2 + (c - c_hat).abs()
    assert (err <= bound * (1 + 1e-5)).all()
    assert ((c - c_hat).abs() <= c * 0.02).all()           # the 8-bit scales are close
    assert t.nbytes() * 8 / w.numel() < 4.2               # 4 bits + 8/64 + 32/(64·256) bits a weight


def test_nf4_linear_forward_and_grad():
    lin = torch.nn.Linear(128, 64)
    layer = NF4Linear(lin)
    x = torch.randn(3, 5, 128, requires_grad=True)
    ref = torch.nn.functional.linear(x, quantize_nf4(lin.weight.detach()).dequantize(), lin.bias)
    torch.testing.assert_close(layer(x), ref)
    layer(x.bfloat16()).float().sum().backward()           # bf16 compute; gradients reach the input only
    assert x.grad is not None and not any(p.requires_grad for p in layer.parameters())
