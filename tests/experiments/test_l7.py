"""L7 quick runs: the scaling-law fit with bootstrap intervals; precision against loss."""
from __future__ import annotations


def test_l7_scaling_quick_holds(run_quick):
    s = run_quick("scaling-laws")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["sizes"] >= 5 and m["budgets"] >= 4 and m["points"] == m["sizes"] * m["budgets"]
    assert 0 < m["alpha_90"][0] <= m["alpha"] <= m["alpha_90"][1]
    assert 0 < m["beta_90"][0] <= m["beta"] <= m["beta_90"][1]
    assert m["optimum_with_inference"]["N"] < m["optimum_train_only"]["N"]


def test_l7_precision_quick_holds(run_quick):
    s = run_quick("precision")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    for p in ("bf16", "fp16_scaling", "fp8_tile"):
        assert abs(m[f"{p}_minus_fp32"]) <= 0.05, p
    assert m["fp16_zero_grad_share"] > m["fp16_scaled_zero_grad_share"]
    last = m["fp8_outlier_errors"][-1]
    assert last["tile"] < last["tensor"]
