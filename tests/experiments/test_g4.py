"""G4 quick run: the cGAN draws its class above chance, Pix2Pix beats an unrelated image, CycleGAN's cycle loss falls."""
from __future__ import annotations


def test_g4_quick_holds(run_quick):
    s = run_quick("conditional-gans")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["cgan_class_accuracy"] >= 0.2 and len(m["cgan_class_fid"]) == 10
    assert m["p2p_adv_ssim"] > m["baseline_ssim"] and m["p2p_l1_l1"] < m["baseline_l1"]
    assert m["patch_receptive_field"] == 8
