"""A run folder: everything one experiment run leaves behind.

    runs/<experiment>/<time>/
        config.json      the full config after overrides
        metrics.jsonl    one JSON object per logged step
        *.png            plots
        summary.json     {"place", "name", "claim", "held", "metrics", ...}
        checkpoint/      (when the experiment trains with checkpoints)
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):  # numpy scalars
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file + fsync + rename, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(_jsonable(data), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Run:
    """Handle an experiment gets: where to write, how to log, which device, quick or full."""

    def __init__(self, directory: Path, device: str = "cpu", quick: bool = False, echo: bool = True,
                 resuming: bool = False):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._device = device
        self.device_read = False      # did the experiment ask for its device? (most run on the CPU alone)
        self.quick = quick
        self.echo = echo
        # `deepatlas run NAME --resume RUN_DIR`: the experiment continues from the newest
        # checkpoint in checkpoint_dir (core.train(..., checkpoint_dir=run.checkpoint_dir,
        # resume=run.resuming)) instead of starting again
        self.resuming = resuming
        self.plots: list[str] = []
        self._metrics = open(self.dir / "metrics.jsonl", "a")

    @property
    def device(self) -> str:
        """The device `deepatlas run --device` chose. Reading it marks the run as device-aware: an
        experiment that never reads it ran on the CPU whatever was asked, and its summary says so."""
        self.device_read = True
        return self._device

    @property
    def device_used(self) -> str:
        """Where the run's work went: the chosen device if the experiment read it, else "cpu"."""
        return self._device if self.device_read else "cpu"

    def log_bytes(self) -> int:
        """Size of metrics.jsonl now: a checkpoint records it, so a resume can cut the lines
        logged after that checkpoint and the resumed log equals an uninterrupted one."""
        self._metrics.flush()
        return self._metrics.tell()

    def truncate_log(self, size: int) -> None:
        """Cut metrics.jsonl back to `size` bytes (the lines up to a checkpoint)."""
        self._metrics.flush()
        self._metrics.truncate(min(size, self._metrics.tell()))
        self._metrics.seek(0, os.SEEK_END)

    def log(self, **metrics: Any) -> None:
        """Append one line to metrics.jsonl, e.g. run.log(step=10, loss=2.3)."""
        self._metrics.write(json.dumps(_jsonable(metrics)) + "\n")
        self._metrics.flush()

    @property
    def checkpoint_dir(self) -> Path:
        """Where a training experiment keeps its periodic checkpoints (for --resume)."""
        return self.dir / "checkpoint"

    def print(self, *args: Any) -> None:
        if self.echo:
            print(*args, flush=True)

    def savefig(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as <run>/<name>.png and close it."""
        import matplotlib.pyplot as plt

        path = self.dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        self.plots.append(path.name)
        return path

    def close(self) -> None:
        self._metrics.close()


def new_run_dir(root: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / name / stamp
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{stamp}-{i}"), i + 1
    return path


def latest_summary(root: Path, name: str) -> dict | None:
    """The newest summary.json written for experiment `name` under `root`, if any."""
    folder = Path(root) / name
    if not folder.is_dir():
        return None
    for run in sorted(folder.iterdir(), reverse=True):
        path = run / "summary.json"
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                continue
    return None
