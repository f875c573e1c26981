def test_f7_quick_holds(run_quick):
    s = run_quick("closed-form-baselines")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["gd_rel_err_momentum"] <= 1e-4 and max(m["map_rel_err"] + m["weight_decay_rel_err"]) <= 1e-4
    assert m["slope_normal"] > m["slope_qr"] + 0.6 and m["svm_agreement"] >= 0.99


def test_f7_mc_dropout_quick_holds(run_quick):
    s = run_quick("mc-dropout-ema-norms")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["coverage_mc_dropout"] < 0.8 and m["worst_gap_gaussian_nll"] <= 0.04
    assert m["nll_gaussian_nll"] < m["nll_mc_dropout_noise"] and m["ema_parity"] <= 1e-6
