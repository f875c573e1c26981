"""G5 quick run: ψ = 0 is the mean image, diversity falls with ψ, the generator learned something."""
from __future__ import annotations


def test_g5_quick_holds(run_quick):
    s = run_quick("stylegan")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["mean_image_max_abs_diff"] < 1e-5
    assert m["diversity"] == sorted(m["diversity"], reverse=True)       # ψ = 1, 0.5, 0: variety falls
    assert m["fid_psi_1"] < m["fid_untrained"]
