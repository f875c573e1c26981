def test_f2_quick_holds(run_quick):
    s = run_quick("mlp-uncertainty")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert abs(m["coverage_nll"] - 0.95) <= 0.03 and m["worst_region_gap_mse"] > 0.09
