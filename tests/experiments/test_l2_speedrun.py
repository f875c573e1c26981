"""L2 speedrun: the modern recipe reaches the nanoGPT recipe's loss sooner; the ablation runs each removal."""
from __future__ import annotations

import pytest

from deepatlas.experiments.l2_speedrun import loss_at_time, time_to_reach


def test_time_to_reach_interpolates_between_evaluations():
    curve = [(0, 0.0, 4.0), (10, 1.0, 3.0), (20, 2.0, 2.0), (30, 3.0, 1.5)]
    assert time_to_reach(curve, 2.5) == pytest.approx(1.5)
    assert time_to_reach(curve, 2.0) == pytest.approx(2.0)
    assert time_to_reach(curve, 1.0) is None
    assert loss_at_time(curve, 2.5) == 2.0 and loss_at_time(curve, 99) == 1.5


def test_speedrun_quick_holds(run_quick):
    s = run_quick("gpt-speedrun")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["time_ratio_median"] <= 0.75
    assert m["speedrun_val_mean"] < m["reference_val_mean"]


def test_ablation_quick_holds_and_names_each_removal(run_quick):
    s = run_quick("gpt-speedrun-ablation")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert set(m["worth"]) == {"muon", "rope", "zero_init"}
    assert set(m["val"]) == {"full", "no muon", "no rope", "no zero_init", "baseline"}
    assert m["full_val"] < m["baseline_val"]


def test_ablation_rejects_an_unknown_removal():
    from deepatlas.experiments.l2_speedrun_ablation import Config, gpt_speedrun_ablation

    with pytest.raises(ValueError, match="dropout.*valid: muon"):
        gpt_speedrun_ablation(Config(removals=("dropout",)), run=None)
