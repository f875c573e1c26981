"""build_lock: two processes that want the same cached item build it once."""
from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from deepatlas.data.cache import build_lock, cache_dir


def _build_if_missing(root: str) -> None:
    import os

    os.environ["DEEPATLAS_CACHE"] = root
    item = cache_dir("thing", "item.txt")
    with build_lock("thing", "item.txt"):
        if item.is_file():
            return
        time.sleep(0.5)                                 # a slow build: the other process arrives meanwhile
        with open(Path(root) / "builds.log", "a") as log:
            log.write("built\n")
        item.write_text("done")


def test_two_processes_build_a_cached_item_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPATLAS_CACHE", str(tmp_path))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_build_if_missing, args=(str(tmp_path),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    assert (tmp_path / "builds.log").read_text() == "built\n"
    assert (tmp_path / "thing" / "item.txt").read_text() == "done"
