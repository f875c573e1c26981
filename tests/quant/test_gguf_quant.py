"""Our Q8_0 / Q4_0 / Q4_1 quantisers write the same bytes as the gguf package, dequantise with our
reader's dequantiser within the documented bounds, and feed BlockQuantLinear."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deepatlas.quant.dequant import QK, TYPE_IDS
from deepatlas.quant.gguf_quant import bytes_per_weight, quantize, round_trip
from deepatlas.quant.linear import BlockQuantLinear

gguf = pytest.importorskip("gguf")


def _x(shape=(48, 256), seed=0):
    x = (np.random.default_rng(seed).standard_normal(shape) * 0.05).astype(np.float32)
    x[0, :QK] = 0                                            # an all-zero block (d = 0)
    x[1, 3], x[1, 9] = 0.5, -0.5                             # a tie for the largest |x| (Q4_0 keeps the first)
    x[2, 40:50] = 0.0125                                     # values landing on halves
    return x


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1"])
def test_bytes_equal_gguf_package(kind):
    x = _x()
    ref = gguf.quants.quantize(x, getattr(gguf.GGMLQuantizationType, kind))
    assert np.array_equal(quantize(x, kind), ref.reshape(-1))


@pytest.mark.parametrize("kind, bound", [("Q8_0", 0.5), ("Q4_1", 0.5), ("Q4_0", 1.0)])
def test_round_trip_bounds(kind, bound):
    x = _x((64, 512), seed=3)
    err = np.abs(round_trip(x, kind) - x).reshape(-1, QK)
    b = x.reshape(-1, QK)
    d = {"Q8_0": np.abs(b).max(1) / 127, "Q4_0": np.abs(b).max(1) / 8, "Q4_1": (b.max(1) - b.min(1)) / 15}[kind]
    assert (err.max(1) <= bound * d * 1.002 + 1e-7 + 1e-3 * np.abs(b).max(1)).all()   # + fp16 rounding of d, m
    assert bytes_per_weight(kind) == {"Q8_0": 34 / 32, "Q4_0": 18 / 32, "Q4_1": 20 / 32}[kind]


def test_block_quant_linear_from_our_bytes():
    x = _x((32, 64))
    layer = BlockQuantLinear(quantize(x, "Q4_1"), TYPE_IDS["Q4_1"], x.shape)
    torch.testing.assert_close(layer.weight(), torch.from_numpy(round_trip(x, "Q4_1")))
    with pytest.raises(ValueError, match="valid"):
        quantize(x, "Q6_K")
