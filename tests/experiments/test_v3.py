"""V3 quick run: the ResNet beats a same-size ViT with few images, and the gap narrows with more."""


def test_v3_quick_holds(run_quick):
    s = run_quick("cnn-vs-vit-data")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert abs(m["params_ResNet"] - m["params_ViT"]) < 0.1 * m["params_ResNet"]   # the same size
    assert m["gap_smallest"] > 0 and m["gap_smallest"] > m["gap_largest"]
