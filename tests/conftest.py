"""Shared test helpers."""
from __future__ import annotations

import pytest
import torch

from deepatlas.core.registry import find, run_experiment

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


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
