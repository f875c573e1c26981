"""What every benchmark shares: a median timer and the result record.

A benchmark measures ours and a peer (PyTorch, Hugging Face, ...) in the same process, same
run, same inputs, and reports `ratio` so that ratio > 1 always means ours is better:
  time units (lower is better):        ratio = peer / ours
  throughput units (higher is better): ratio = ours / peer
`met` says whether the ratio reaches the goal the benchmark states.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def median_time(fn: Callable[[], Any], warmup: int = 2, repeats: int = 5) -> float:
    """Median wall-clock seconds of `fn()` over `repeats` calls, after `warmup` untimed calls.

    The median, not the mean: one call slowed by the OS or another process should not move it."""
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_times(fns: dict[str, Callable[[], Any]], warmup: int = 2,
                             repeats: int = 5) -> dict[str, float]:
    """Median seconds of each fn, timing them in turns (a, b, a, b, ...) rather than all of a
    then all of b, so a slow spell of a shared machine slows both sides alike."""
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def result(name: str, unit: str, ours: float, peer: float, peer_name: str, goal: float,
           higher_is_better: bool = False) -> dict:
    """The record bench/run.py prints and saves; ratio > 1 means ours is better.

    higher_is_better=False (times, bytes): ratio = peer / ours.
    higher_is_better=True (tokens/s, samples/s): ratio = ours / peer."""
    if ours <= 0 or peer <= 0:
        raise ValueError(f"{name}: measurements must be positive, got ours={ours}, peer={peer}")
    ratio = ours / peer if higher_is_better else peer / ours
    return {"name": name, "unit": unit, "ours": float(ours), "peer": float(peer),
            "peer_name": peer_name, "ratio": float(ratio), "goal": float(goal),
            "met": bool(ratio >= goal)}
