"""Quantisers (not only dequantisers) for ggml's simple block types Q8_0, Q4_0 and Q4_1.

Each row is cut into blocks of 32 weights; each block stores its own scale (fp16) and 32 small
integers (ggml-quants.c quantize_row_*_ref; the layouts are in deepatlas.quant.dequant):

  Q8_0 (34 bytes)  d = max|x| / 127,            q = roundf(x / d) ∈ [−127, 127],      x̂ = d · q
  Q4_0 (18 bytes)  d = x_m / −8, x_m the value of largest |x| (sign kept),
                   q = min(15, trunc(x / d + 8.5)) ∈ [0, 15],                        x̂ = d · (q − 8)
  Q4_1 (20 bytes)  d = (max − min) / 15, m = min,
                   q = min(15, trunc((x − m) / d + 0.5)) ∈ [0, 15],                  x̂ = d · q + m
  4-bit codes are packed two a byte: byte j = q_j | q_{j+16} << 4.

Computed in float32 as ggml does (the reciprocal 1/d, then a multiply); d and m are stored as
fp16 after the codes are chosen from the fp32 values. Bytes equal the `gguf` package's
gguf.quants.quantize (tests/quant/test_gguf_quant.py). Round-trip bounds per element:
Q8_0 |x − x̂| ≤ d/2 (+ fp16 rounding of d), Q4_1 ≤ d/2, Q4_0 ≤ d (its grid is not centred).
"""
from __future__ import annotations

import numpy as np

from deepatlas.quant.dequant import GGML_TYPES, QK, TYPE_IDS, dequantize

QUANTISABLE = ("Q8_0", "Q4_0", "Q4_1")


def _blocks(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[-1] % QK:
        raise ValueError(f"rows of {x.shape[-1]} values are not a whole number of {QK}-value blocks")
    return x.reshape(-1, QK)                                                     # (n_blocks, 32)


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)


def _roundf(v: np.ndarray) -> np.ndarray:
    """C's roundf: halves away from zero (np.round rounds them to even); ⌊a⌋ + ⌊2(a − ⌊a⌋)⌋ of
    a = |v| avoids the float rounding of a + ½ just below a half."""
    a = np.abs(v)
    return np.sign(v) * (np.floor(a) + np.floor(2 * (a - np.floor(a))))


def _pack4(q: np.ndarray) -> np.ndarray:
    """(n, 32) codes 0..15 -> (n, 16) bytes, byte j = q_j | q_{j+16} << 4."""
    q = q.astype(np.uint8)
    return q[:, :16] | (q[:, 16:] << np.uint8(4))


def _f16_bytes(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float16).view(np.uint8)                                   # (n, 2)


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    d = (np.abs(b).max(axis=1, keepdims=True) / np.float32(127)).astype(np.float32)  # d = max|x| / 127
    q = _roundf(b * _inverse(d))                                                     # q = roundf(x / d)
    return np.concatenate([_f16_bytes(d), q.astype(np.int8).view(np.uint8)], axis=1).reshape(-1)


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    x_m = np.take_along_axis(b, np.abs(b).argmax(axis=1, keepdims=True), axis=1)     # signed extreme
    d = (x_m / np.float32(-8)).astype(np.float32)                                    # d = x_m / −8
    q = np.minimum(np.trunc(b * _inverse(d) + np.float32(8.5)), 15)                  # q = min(15, ⌊x/d + 8.5⌋)
    return np.concatenate([_f16_bytes(d), _pack4(q)], axis=1).reshape(-1)


def quantize_q4_1(x: np.ndarray) -> np.ndarray:
    b = _blocks(x)
    lo, hi = b.min(axis=1, keepdims=True), b.max(axis=1, keepdims=True)
    d = ((hi - lo) / np.float32(15)).astype(np.float32)                              # d = (max − min) / 15
    q = np.minimum(np.trunc((b - lo) * _inverse(d) + np.float32(0.5)), 15)           # q = ⌊(x − m)/d + ½⌋
    return np.concatenate([_f16_bytes(d), _f16_bytes(lo), _pack4(q)], axis=1).reshape(-1)


QUANTISERS = {"Q8_0": quantize_q8_0, "Q4_0": quantize_q4_0, "Q4_1": quantize_q4_1}


def quantize(x: np.ndarray, kind: str) -> np.ndarray:
    """float array (..., k·32) -> the raw ggml bytes (uint8) of its blocks, row by row."""
    if kind not in QUANTISERS:
        raise ValueError(f"cannot quantise to {kind!r}; valid: {', '.join(QUANTISABLE)}")
    return QUANTISERS[kind](x)


def round_trip(x: np.ndarray, kind: str) -> np.ndarray:
    """x quantised to `kind` and dequantised again (float32, x's shape)."""
    return dequantize(quantize(x, kind), TYPE_IDS[kind], x.shape)


def bytes_per_weight(kind: str) -> float:
    _, elems, nbytes, _ = GGML_TYPES[TYPE_IDS[kind]]
    return nbytes / elems
