"""What this CPU computes fast: whether it multiplies bfloat16 in hardware.

On a CPU with AMX (Intel Sapphire Rapids and later) or AVX-512 BF16, oneDNN runs bf16 matmuls and
convolutions in hardware, 2–3× faster than fp32 — the reason several places train or decode under
bf16. Without them (an AVX2-only CPU, such as an AMD EPYC of this workplace without AVX-512)
PyTorch falls back to converting bf16 element by element: measured there, a 512×128 @ 128×512 bf16
matmul took 50 ms against 1.0 ms in fp32 (one thread). So code that picks bf16 *for speed* asks
`fast_bf16()` and keeps fp32 where it is false (Muon's Newton–Schulz iteration, foundations/optim.py);
code whose subject is bf16 itself (L7's precision sweep, T2's and S3's quality of bf16 weights) runs
bf16 regardless. (The int8/int4 kernels take bf16 input on both kinds of CPU and are fast on both.)

DEEPATLAS_FAST_BF16=1 or 0 overrides the detection (tests use it to exercise both branches).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

BF16_FLAGS = ("amx_bf16", "avx512_bf16")      # /proc/cpuinfo flags of hardware bf16 dot products
PRECISIONS = ("fp32", "bf16", "fp16")          # what core.train computes in; a config may also say "auto"
ENV = "DEEPATLAS_FAST_BF16"


@functools.cache
def cpuinfo_field(key: str) -> str | None:
    """The value of `key` ("model name", "flags") for /proc/cpuinfo's first processor, or None where
    there is no such file or field."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == key:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of /proc/cpuinfo's first processor (empty where there is no such file)."""
    return frozenset((cpuinfo_field("flags") or "").split())


def fast_bf16() -> bool:
    """True where this CPU multiplies bf16 in hardware (AMX or AVX-512 BF16)."""
    forced = os.environ.get(ENV)
    if forced is not None:
        if forced not in ("0", "1"):
            raise ValueError(f"{ENV}={forced!r}; valid: 1 (bf16 is fast) or 0 (it is not)")
        return forced == "1"
    return bool(cpu_flags() & set(BF16_FLAGS))


def speed_dtype() -> torch.dtype:
    """The dtype to compute in when bf16 is chosen only for speed: bfloat16 where it is fast, else float32."""
    import torch

    return torch.bfloat16 if fast_bf16() else torch.float32


def speed_precision(precision: str, device_type: str = "cpu") -> str:
    """Resolve a config's `precision`: "auto" (bf16 wanted only for speed) becomes "bf16" on a GPU
    or a CPU where bf16 is fast, else "fp32"; "fp32", "bf16" and "fp16" are returned unchanged, so a
    config that names a precision gets it. Experiments record the resolved value with their metrics."""
    valid = ("auto", *PRECISIONS)
    if precision not in valid:
        raise ValueError(f"precision={precision!r}; valid: {', '.join(valid)}")
    if precision != "auto":
        return precision
    return "bf16" if device_type == "cuda" or (device_type == "cpu" and fast_bf16()) else "fp32"
