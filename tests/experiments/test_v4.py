"""V4 quick run: both detectors learn the shapes and the one-stage detector is the faster."""


def test_v4_quick_holds(run_quick):
    s = run_quick("detect-shapes")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["speedup"] > 1 and m["images_s_one_stage"] > m["images_s_two_stage"]
    for k in ("one_stage", "two_stage"):
        assert 0 <= m[f"map_{k}"] <= m[f"map50_{k}"] <= 1       # mAP@[.5:.95] ≤ mAP@0.5
    assert m["params_two_stage"] > m["params_one_stage"]
