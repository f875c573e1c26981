"""V3 quick run: the ResNet beats a same-size ViT with few images.

The quick run does not assert the claim's second half, that the gap narrows with more images: at
the quick setting (one seed, ~60 updates a run, 1,000 test images: ±1.5% per accuracy) the change
of the gap with n is noise. Measured on this workplace's AMD machine: 300 → 2,000 images gave
+9.9% → +10.4% (seed 0); 200 → 4,000 with 2 epochs gave +4.8% → +3.1% (seed 0) and +1.5% → +4.5%
(seed 1). The full run measures it over 3 seeds (+11.9% at 500 images, +6.9% at 10,000: held)."""


def test_v3_quick_resnet_ahead_with_few_images(run_quick):
    s = run_quick("cnn-vs-vit-data")
    m = s["metrics"]
    assert abs(m["params_ResNet"] - m["params_ViT"]) < 0.1 * m["params_ResNet"]   # the same size
    assert m["gap_smallest"] > 0, m
    print(f"gap {m['gap_smallest']:+.3f} -> {m['gap_largest']:+.3f} (narrowing not asserted; held: {s['held']})")
