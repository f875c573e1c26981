"""Shared test helpers.

`make test` runs the suite on two pytest-xdist workers (one per core). Each worker then keeps
torch and BLAS to one thread: two workers with two threads each would put four busy threads on two
cores, and OpenMP's barriers collapse when a sibling thread is descheduled (core/threads.py)."""
from __future__ import annotations

import os

import pytest
import torch
from threadpoolctl import threadpool_limits

from deepatlas.core.registry import find, run_experiment

WORKER_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, torch.get_num_threads()))
torch.set_num_threads(WORKER_THREADS)
if WORKER_THREADS == 1:
    threadpool_limits(limits=1, user_api="blas")


@pytest.fixture(autouse=True)
def _restore_threads():
    """Experiments that load SmolLM2 set their own thread count; give the worker its own back."""
    yield
    if torch.get_num_threads() != WORKER_THREADS:
        torch.set_num_threads(WORKER_THREADS)


@pytest.fixture
def run_quick(tmp_path):
    """run_quick("F3") -> summary dict of the experiment's --quick run; fails on error."""

    def _run(name: str, *overrides: str) -> dict:
        exps = find(name)
        assert len(exps) == 1, f"{name} names {len(exps)} experiments; use the experiment name"
        summary = run_experiment(exps[0], quick=True, out=tmp_path / exps[0].name,
                                 overrides=list(overrides), echo=False)
        assert "error" not in summary, summary.get("traceback")
        return summary

    return _run
