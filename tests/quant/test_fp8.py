"""FP8 rounding with per-tensor and tile-wise scales; FP8Linear; dynamic loss scaling."""
from __future__ import annotations

import pytest
import torch

from deepatlas.quant.fp8 import (DynamicLossScaler, fp8_matmul_error, quantize_per_tensor, quantize_tiles,
                                 to_fp8_linears)


def test_rounding_is_the_fp8_cast_and_tiles_are_independent():
    x = torch.tensor([[448.0, 1.0, 0.3, -2.75]])
    torch.testing.assert_close(quantize_per_tensor(x), x.to(torch.float8_e4m3fn).float())
    a = torch.randn(3, 256)
    a[0, 5] = 1e4                                                   # an outlier in tile (0, 0)
    q = quantize_tiles(a, 1, 128)
    torch.testing.assert_close(q[0, 128:], quantize_per_tensor(a[0, 128:]))   # its own scale
    torch.testing.assert_close(q[1], quantize_tiles(a[1:2], 1, 128)[0])
    w = torch.randn(200, 130)                                       # not a multiple of 128
    qw = quantize_tiles(w, 128, 128)
    torch.testing.assert_close(qw[128:, 128:], quantize_per_tensor(w[128:, 128:]))
    assert float((qw - w).abs().max() / w.abs().max()) < 0.07       # e4m3: 3 mantissa bits


def test_tiles_beat_one_scale_when_activations_have_outliers():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(64, 512, generator=g), torch.randn(256, 512, generator=g) * 0.05
    x[:4] *= 1e5                                                    # four outlier tokens
    assert fp8_matmul_error(x, w, "tile") < 0.5 * fp8_matmul_error(x, w, "tensor")


def test_fp8_linear_gradients_near_fp32():
    torch.manual_seed(0)
    ref = torch.nn.Linear(256, 64)
    fp8 = to_fp8_linears(torch.nn.Sequential(torch.nn.Linear(256, 64)))[0]
    fp8.load_state_dict(ref.state_dict())
    x = torch.randn(32, 256)
    for m in (ref, fp8):
        m(x).pow(2).sum().backward()
    rel = (fp8.weight.grad - ref.weight.grad).norm() / ref.weight.grad.norm()
    assert 0 < rel < 0.1
    with pytest.raises(ValueError, match="granularity"):
        to_fp8_linears(torch.nn.Linear(2, 2), "row")


def test_dynamic_loss_scaler_backs_off_and_grows():
    p = torch.nn.Parameter(torch.zeros(2))
    s = DynamicLossScaler(init_scale=8.0, growth_interval=2)
    p.grad = torch.tensor([float("inf"), 1.0])
    assert not s.unscale_and_check([p]) and s.scale == 4.0 and s.skipped == 1
    for _ in range(2):
        p.grad = torch.tensor([4.0, 8.0])
        assert s.unscale_and_check([p])
    torch.testing.assert_close(p.grad, torch.tensor([1.0, 2.0]))
    assert s.scale == 8.0
