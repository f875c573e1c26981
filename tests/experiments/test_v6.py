"""V6 quick run: Grad-CAM peaks on the built model's evidence and beats random in the deletion test."""
from pathlib import Path


def test_v6_quick_holds(run_quick):
    s = run_quick("gradcam-deletion")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["gradcam_peak_class0"] and m["gradcam_peak_class1"]
    assert m["n_images"] >= 200 and m["auc_gradcam"] < m["auc_random"]
    assert (Path(s["dir"]) / "model.json").is_file() and m["resnet_test_accuracy"] > 0.6
