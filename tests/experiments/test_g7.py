"""G7 quick run: schedulers equal diffusers', and training lowers the FID of the samples."""
from __future__ import annotations


def test_g7_quick_holds(run_quick):
    s = run_quick("ddpm")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["fid_final"] < 0.5 * m["fid_untrained"]
    assert m["fid_curve"][-1] < m["fid_curve"][1]
    assert m["feature_net_test_accuracy"] > 0.8
