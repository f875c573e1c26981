def test_f4_quick_holds(run_quick):
    s = run_quick("norms-dropout")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert max(v for k, v in m.items() if k.startswith("maxdiff_")) <= 1e-5
    assert m["adam_l2_vs_adamw"] > 1e-3 and m["sgd_l2_vs_decoupled"] < 1e-5
