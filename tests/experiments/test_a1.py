"""A1 quick run: im2col conv equals torch, receptive fields known, ResNet learns and beats LeNet-5."""
from deepatlas.vision.classify import load_model


def test_a1_quick_holds(run_quick):
    s = run_quick("convolution-backbones")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["conv_max_diff"] < 1e-4 and m["rf_alexnet"] == 195 and m["rf_vgg16"] == 212
    assert m["acc_ResNet"] >= 0.7 and m["acc_ResNet"] > m["acc_LeNet-5"]
    model, meta = load_model(s["dir"])          # the trained ResNet, for `deepatlas explain`
    assert meta["kind"] == "resnet" and sum(p.numel() for p in model.parameters()) == m["params_ResNet"]
