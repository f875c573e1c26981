"""G3 quick run: the minimax loss saturates, WGAN-GP covers more ring modes, DCGAN's FID falls."""
from __future__ import annotations


def test_g3_quick_holds(run_quick):
    s = run_quick("gan")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["grad_ratio"] < 0.1 and m["d_fake_mean"] < 0.1
    assert m["fid_same_set"] < 1e-6 and m["fid_vs_noise"] == sorted(m["fid_vs_noise"])
    assert m["modes_cured"] > m["modes_collapsing"]
    assert m["fid_final"] < 0.5 * m["fid_untrained"]
