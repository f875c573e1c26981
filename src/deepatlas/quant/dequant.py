"""Dequantisation of ggml tensor types to float32 (numpy, vectorised over blocks).

A quantised ggml tensor is a sequence of fixed-size blocks along each row; each block stores a
few floats of scale and many small integers. The layouts (ggml-common.h) are in the comments
of each function. `dequantize(raw_bytes, ggml_type, shape)` is the one entry point.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

QK = 32  # elements per block of the simple types (Q4_0, Q4_1, Q8_0)
QK_K = 256  # elements per super-block of the k-quants (Q4_K, Q6_K)


def _blocks(raw: np.ndarray, block_bytes: int) -> np.ndarray:
    """(n_blocks, block_bytes) uint8 view of the tensor's bytes."""
    return np.ascontiguousarray(raw).view(np.uint8).reshape(-1, block_bytes)


def _f16(blocks: np.ndarray, start: int) -> np.ndarray:
    """The fp16 at byte `start` of every block, as a float32 column (n_blocks, 1)."""
    return blocks[:, start:start + 2].copy().view(np.float16).astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """Q4 packing: byte j holds element j (low nibble) and element j + 16 (high nibble)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def dequant_f32(raw: np.ndarray) -> np.ndarray:
    return raw.view(np.float32).astype(np.float32, copy=True)


def dequant_f16(raw: np.ndarray) -> np.ndarray:
    return raw.view(np.float16).astype(np.float32)


def dequant_bf16(raw: np.ndarray) -> np.ndarray:
    # bf16 is the top half of an fp32: shift it back into place
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def dequant_q8_0(raw: np.ndarray) -> np.ndarray:
    # block_q8_0 (34 bytes): d: fp16 | qs: int8[32]          x_i = d · q_i
    b = _blocks(raw, 34)
    d = _f16(b, 0)
    q = b[:, 2:].view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)


def dequant_q4_0(raw: np.ndarray) -> np.ndarray:
    # block_q4_0 (18 bytes): d: fp16 | qs: uint8[16] (32 nibbles)    x_i = d · (q_i − 8)
    b = _blocks(raw, 18)
    d = _f16(b, 0)
    q = _nibbles(b[:, 2:]).astype(np.float32)
    return (d * (q - 8)).reshape(-1)


def dequant_q4_1(raw: np.ndarray) -> np.ndarray:
    # block_q4_1 (20 bytes): d: fp16 | m: fp16 | qs: uint8[16]    x_i = d · q_i + m
    b = _blocks(raw, 20)
    d, m = _f16(b, 0), _f16(b, 2)
    q = _nibbles(b[:, 4:]).astype(np.float32)
    return (d * q + m).reshape(-1)


def _k4_scales_mins(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8 six-bit scales and mins packed in 12 bytes (ggml's get_scale_min_k4).

    j < 4: sc = s[j] & 63,                         m = s[j+4] & 63
    j ≥ 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4, m = (s[j+4] >> 4) | (s[j] >> 6) << 4
    """
    s = scales.astype(np.int32)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc.astype(np.float32), mn.astype(np.float32)


def dequant_q4_k(raw: np.ndarray) -> np.ndarray:
    # block_q4_K (144 bytes, 256 values in 8 sub-blocks of 32):
    #   d: fp16 | dmin: fp16 | scales: uint8[12] (8 six-bit scales + 8 six-bit mins) | qs: uint8[128]
    # qs holds 4 chunks of 32 bytes; chunk c gives sub-block 2c (low nibbles) and 2c+1 (high).
    #   x = d · sc_j · q − dmin · m_j    for the element's sub-block j
    b = _blocks(raw, 144)
    d, dmin = _f16(b, 0), _f16(b, 2)
    sc, mn = _k4_scales_mins(b[:, 4:16])  # (n, 8)
    qs = b[:, 16:].reshape(-1, 4, 1, 32)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
    return ((d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]).reshape(-1)


def dequant_q6_k(raw: np.ndarray) -> np.ndarray:
    # block_q6_K (210 bytes, 256 values in 16 sub-blocks of 16):
    #   ql: uint8[128] (low 4 bits) | qh: uint8[64] (high 2 bits) | scales: int8[16] | d: fp16
    # Each half of 128 values uses 64 bytes of ql and 32 of qh; for l < 32 in a half:
    #   q[l]    = ql[l] & 15    | ((qh[l] >> 0) & 3) << 4      q[l+32] = ql[l+32] & 15 | ((qh[l] >> 2) & 3) << 4
    #   q[l+64] = ql[l] >> 4    | ((qh[l] >> 4) & 3) << 4      q[l+96] = ql[l+32] >> 4 | ((qh[l] >> 6) & 3) << 4
    #   x = d · scale[sub-block] · (q − 32)
    b = _blocks(raw, 210)
    ql = b[:, :128].reshape(-1, 2, 64).astype(np.int32)
    qh = b[:, 128:192].reshape(-1, 2, 1, 32).astype(np.int32)
    scales = b[:, 192:208].view(np.int8).astype(np.float32)  # (n, 16)
    d = _f16(b, 208)
    low = np.stack([ql[:, :, :32] & 15, ql[:, :, 32:] & 15, ql[:, :, :32] >> 4, ql[:, :, 32:] >> 4], axis=2)
    high = (qh >> np.array([0, 2, 4, 6]).reshape(1, 1, 4, 1)) & 3  # (n, 2, 4, 32)
    q = (low | (high << 4)).astype(np.float32) - 32  # (n, half, quarter, 32) = 256 in order
    return (d[:, :, None] * scales.reshape(-1, 16, 1) * q.reshape(-1, 16, 16)).reshape(-1)


# ggml type id -> (name, elements per block, bytes per block, dequantiser)
GGML_TYPES: dict[int, tuple[str, int, int, Callable[[np.ndarray], np.ndarray]]] = {
    0: ("F32", 1, 4, dequant_f32),
    1: ("F16", 1, 2, dequant_f16),
    2: ("Q4_0", QK, 18, dequant_q4_0),
    3: ("Q4_1", QK, 20, dequant_q4_1),
    8: ("Q8_0", QK, 34, dequant_q8_0),
    12: ("Q4_K", QK_K, 144, dequant_q4_k),
    14: ("Q6_K", QK_K, 210, dequant_q6_k),
    30: ("BF16", 1, 2, dequant_bf16),
}
TYPE_IDS = {name: t for t, (name, *_) in GGML_TYPES.items()}


def type_name(ggml_type: int) -> str:
    return GGML_TYPES[ggml_type][0] if ggml_type in GGML_TYPES else f"type {ggml_type}"


def dequantize(raw: np.ndarray, ggml_type: int, shape: tuple[int, ...]) -> np.ndarray:
    """Bytes of one tensor -> float32 array of `shape` (numpy order, last dim = row)."""
    if ggml_type not in GGML_TYPES:
        raise ValueError(f"cannot dequantise ggml type {ggml_type}; supported: "
                         f"{', '.join(f'{n}={t}' for t, (n, *_) in GGML_TYPES.items())}")
    name, block_elems, block_bytes, fn = GGML_TYPES[ggml_type]
    n = int(np.prod(shape))
    if raw.size != n // block_elems * block_bytes:
        raise ValueError(f"{name} tensor of shape {shape} needs {n // block_elems * block_bytes} bytes, got {raw.size}")
    return fn(np.asarray(raw, dtype=np.uint8)).reshape(shape)
