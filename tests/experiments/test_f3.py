def test_f3_quick_holds(run_quick):
    s = run_quick("optimizer-zigzag")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["speedup_momentum"] >= 3 and m["speedup_Adam"] >= 3 and m["sgd_narrow_sign_changes"] > 10
