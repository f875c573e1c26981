"""WAV files (RIFF, PCM 8/16/24/32-bit or 32-bit float, any rate, any channel count) and resampling.

read_wav(path) -> (samples (T,) float32 in [-1, 1], mono, at the file's rate), read_audio(path, 16000)
resamples too. The reader walks the RIFF chunks and checks each size against the bytes that are
really there before reading, so a truncated or non-audio file gets a one-line WavError.

Resampling by a rational factor up/down with a windowed-sinc low-pass filter (Smith, "Digital
Audio Resampling"; the design scipy.signal.resample_poly uses, so the two agree to float rounding):

    h[n] = (1/R) sinc((n − L)/R) · w_kaiser(n; β=5),  n = 0..2L,  L = 10R,  R = max(up, down),
           scaled to sum to `up` (unit gain at DC after inserting up−1 zeros between samples)
    y[m] = Σ_k x[k] · h[L + m·down − k·up]      (the input upsampled by `up`, filtered, kept every `down`)
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np


class WavError(ValueError):
    """The file is not a WAV this reader can decode; the message says why in one line."""


def _chunks(data: bytes, path: str):
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError(f"{path}: not a WAV file (no RIFF/WAVE header; {len(data)} bytes)")
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"data" and len(body) < size:   # truncated recording: keep the whole samples there are
            yield cid, body
            return
        if len(body) < size:
            raise WavError(f"{path}: chunk {cid!r} claims {size} bytes but only {len(body)} remain")
        yield cid, body
        pos += 8 + size + (size & 1)              # chunks are padded to an even length


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """-> (mono float32 samples in [-1, 1], sample rate). Channels are averaged."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise WavError(f"{path}: cannot read ({err.strerror or err})") from None
    fmt = body = None
    for cid, chunk in _chunks(data, path):
        if cid == b"fmt ":
            if len(chunk) < 16:
                raise WavError(f"{path}: fmt chunk of {len(chunk)} bytes (need 16)")
            fmt = struct.unpack_from("<HHIIHH", chunk)
            if fmt[0] == 0xFFFE and len(chunk) >= 26:   # WAVE_FORMAT_EXTENSIBLE: the real tag follows
                fmt = (struct.unpack_from("<H", chunk, 24)[0],) + fmt[1:]
        elif cid == b"data":
            body = chunk
    if fmt is None or body is None:
        raise WavError(f"{path}: WAV without a {'fmt' if fmt is None else 'data'} chunk")
    tag, channels, rate, _, _, bits = fmt
    if channels < 1 or rate < 1:
        raise WavError(f"{path}: {channels} channels at {rate} Hz")
    kinds = {(1, 8): "u8", (1, 16): "<i2", (1, 24): "i24", (1, 32): "<i4", (3, 32): "<f4", (3, 64): "<f8"}
    if (tag, bits) not in kinds:
        raise WavError(f"{path}: format tag {tag} with {bits} bits per sample is not supported "
                       f"(valid: PCM 8/16/24/32-bit, IEEE float 32/64-bit)")
    width = bits // 8
    frames = len(body) // (width * channels)
    if frames == 0:
        raise WavError(f"{path}: no audio samples (empty data chunk)")
    raw = body[:frames * width * channels]
    kind = kinds[(tag, bits)]
    if kind == "u8":
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif kind == "i24":  # three little-endian bytes, sign-extended through the top byte of an int32
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        x = ((b[:, 0] << 8 | b[:, 1] << 16 | b[:, 2] << 24) >> 8).astype(np.float32) / 2 ** 23
    elif kind.startswith("<i"):
        x = np.frombuffer(raw, kind).astype(np.float32) / 2 ** (bits - 1)
    else:
        x = np.frombuffer(raw, kind).astype(np.float32)
    return x.reshape(frames, channels).mean(1), rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """16-bit PCM mono (for tests and generated speech)."""
    pcm = (np.clip(np.asarray(samples, np.float64), -1, 1 - 2 ** -15) * 2 ** 15).astype("<i2").tobytes()
    head = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, 1, 1, rate,
                       rate * 2, 2, 16, b"data", len(pcm))
    Path(path).write_bytes(head + pcm)


# ---- resampling ---------------------------------------------------------------------------------

def kaiser(n: int, beta: float) -> np.ndarray:
    """w[i] = I₀(β √(1 − (2i/(n−1) − 1)²)) / I₀(β), the symmetric Kaiser window."""
    r = 2 * np.arange(n) / (n - 1) - 1
    return np.i0(beta * np.sqrt(np.clip(1 - r * r, 0, None))) / np.i0(beta)


def sinc_filter(up: int, down: int, beta: float = 5.0) -> np.ndarray:
    """The 2L+1 taps of the anti-aliasing low-pass, cut-off at the lower Nyquist of the two rates."""
    rate = max(up, down)
    half = 10 * rate                                    # L: ten zero crossings each side
    n = np.arange(2 * half + 1) - half
    h = np.sinc(n / rate) / rate * kaiser(2 * half + 1, beta)
    return h / h.sum() * up


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """x at from_rate -> ceil(len·to/from) samples at to_rate (zero signal assumed outside x)."""
    if from_rate < 1 or to_rate < 1:
        raise ValueError(f"rates must be positive, got {from_rate} -> {to_rate}")
    g = math.gcd(from_rate, to_rate)
    up, down = to_rate // g, from_rate // g
    x = np.asarray(x, np.float64)
    if up == down:
        return x.astype(np.float32)
    h = sinc_filter(up, down)
    half = (len(h) - 1) // 2
    taps = 2 * half // up + 1
    n_out = -(-len(x) * up // down)
    # output m sits at t = m·down on the upsampled grid, input k at k·up; the first input it reads
    # is k0 = ⌈(t − L)/up⌉ and then tap j weighs x[k0 + j] by h[2L − r − j·up], r = (L − t) mod up:
    # the weights depend on the phase r only, so they form an (up, taps) table
    j = np.arange(taps)
    index = 2 * half - np.arange(up)[:, None] - j[None, :] * up                  # (up, taps)
    table = np.where((index >= 0) & (index < len(h)), h[np.clip(index, 0, len(h) - 1)], 0.0)
    xp = np.concatenate([np.zeros(taps), x, np.zeros(taps)])                    # zeros outside x
    out = np.empty(n_out, np.float32)
    for start in range(0, n_out, 1 << 15):  # blocks of outputs keep the (M, taps) arrays small
        t = np.arange(start, min(n_out, start + (1 << 15))) * down              # (M,)
        k0 = -((half - t) // up)                                                # ⌈(t − L) / up⌉
        r = (half - t) % up
        # y[m] = Σ_j x[k0 + j] · h[2L − r − j·up]
        out[start:start + len(t)] = np.einsum("mj,mj->m", xp[k0[:, None] + j + taps], table[r])
    return out


def read_audio(path: str | Path, rate: int = 16000) -> np.ndarray:
    """Mono float32 samples at `rate` (resampled when the file has another)."""
    x, file_rate = read_wav(path)
    return x if file_rate == rate else resample(x, file_rate, rate)
