"""G8 SR3 quick run (digits 4×4 -> 8×8): samples beat bicubic in FID and stay consistent with the input."""
from __future__ import annotations


def test_g8_superres_quick_holds(run_quick):
    s = run_quick("superres")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["fid_sr3"] < m["fid_bicubic"] and m["consistency_mse"] < m["mse_bicubic_to_truth"]
    assert m["loss_last"] < 0.5 * m["loss_first"]
