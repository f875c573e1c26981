def test_f8_vib_quick_holds(run_quick):
    s = run_quick("vib-tradeoff")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["rate_monotone"] and m["rate_largest_beta"] * 10 <= m["rate_smallest_beta"]
