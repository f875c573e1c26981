"""Device choice: cpu, cuda or mps, checked against what this machine has."""
from __future__ import annotations

import torch

DEVICES = ("cpu", "cuda", "mps")


def available(name: str) -> bool:
    if name == "cpu":
        return True
    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return False


def pick(name: str = "cpu") -> str:
    """Return `name` if usable here ('auto' takes the best there is); else a clear error."""
    if name == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if available(d))
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; valid: auto, {', '.join(DEVICES)}")
    if not available(name):
        have = [d for d in DEVICES if available(d)]
        raise ValueError(f"device {name!r} is not available on this machine; available: {', '.join(have)}")
    return name
