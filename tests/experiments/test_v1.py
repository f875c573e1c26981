"""V1 quick run: the ViT equals HF ViT and learns Fashion-MNIST past the quick bar."""
from deepatlas.vision.classify import load_model


def test_v1_quick_holds(run_quick):
    s = run_quick("vit-fashion")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["hf_logits_max_diff"] < 1e-4 and m["hf_attention_max_diff"] < 1e-4
    assert m["test_accuracy"] >= 0.7 and m["acc_35px_interpolated"] > 0.1   # above chance at a new resolution
    model, meta = load_model(s["dir"])
    assert meta["kind"] == "vit" and model.grid == (4, 4)
