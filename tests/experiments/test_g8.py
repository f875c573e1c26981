"""G8 quick run (8×8 digits): DDIM = diffusers', guidance trades diversity for confidence, SDEdit, inpainting."""
from __future__ import annotations


def test_g8_quick_holds(run_quick):
    s = run_quick("guidance")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["ddim_parity"] < 1e-5
    assert m["cfg_confidence_max_w"] > m["cfg_confidence_w1"] and m["cfg_diversity_max_w"] < m["cfg_diversity_w1"]
    assert m["inpaint_known_max_abs"] < 1e-6 and m["inpaint_hole_mse"] < m["unguided_hole_mse"]
    assert m["sdedit_mse"] == sorted(m["sdedit_mse"])
