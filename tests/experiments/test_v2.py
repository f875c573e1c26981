"""V2 quick run: Swin equals HF Swin, the shift mask is exact, a small Swin learns Fashion-MNIST."""
import torch

from deepatlas.experiments.v2_swin import mask_disagreements
from deepatlas.models.swin import shift_mask


def test_v2_quick_holds(run_quick):
    s = run_quick("swin-windows")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["hf_max_diff"] < 1e-4 and m["mask_disagreements"] == 0 and m["test_accuracy"] >= 0.7


def test_the_mask_check_catches_a_wrong_mask(monkeypatch):
    # the first-principles check is not vacuous: a mask that lets everything through disagrees
    import deepatlas.experiments.v2_swin as v2
    assert mask_disagreements(8, 8, 4, 2) == 0
    monkeypatch.setattr(v2, "shift_mask", lambda H, W, w, s: torch.zeros_like(shift_mask(H, W, w, s)))
    assert v2.mask_disagreements(8, 8, 4, 2) > 0
