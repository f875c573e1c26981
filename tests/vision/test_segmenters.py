"""FCN, U-Net, DeepLab: output shapes, what the skips and the atrous stage change, a loss that trains."""
import pytest
import torch

from deepatlas.data.shapes import shapes_dataset
from deepatlas.models.cnn import count_parameters
from deepatlas.models.segmentation import ASPP, FCN, DeepLab, UNet
from deepatlas.vision.segmentation import class_weights, evaluate_segmenter, train_segmenter

W = (4, 8, 16, 32)


@pytest.mark.parametrize("model", [FCN(widths=W), FCN(widths=W, skips=False), UNet(widths=W),
                                   UNet(widths=W, skips=False), DeepLab(widths=W, aspp_channels=8)])
def test_output_is_per_pixel_logits(model):
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 5, 32, 32)


def test_skips_and_atrous_stage():
    assert count_parameters(UNet(widths=W)) > count_parameters(UNet(widths=W, skips=False))   # wider decoder inputs
    d = DeepLab(widths=W, aspp_channels=8)
    feats = d.backbone.features(torch.rand(1, 3, 32, 32))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 8]           # the last stage keeps 8×8 (dilated, not strided)
    conv = d.backbone.stages[-1][0].conv2[0]
    assert conv.dilation == (2, 2) and conv.padding == (2, 2) and conv.stride == (1, 1)
    aspp = ASPP(16, 8, rates=(1, 2))
    assert aspp(torch.rand(2, 16, 5, 5)).shape == (2, 8, 5, 5)
    with pytest.raises(ValueError, match="divisible by 8"):
        UNet(widths=W)(torch.rand(1, 3, 30, 30))


def test_zero_init_starts_uniform_and_training_helps():
    data = shapes_dataset("train", n=32, size=32, max_objects=3)
    torch.manual_seed(0)
    m = FCN(widths=W)
    out = m(data.images[:2])
    torch.testing.assert_close(out, torch.zeros_like(out))          # log K loss at step 0
    w = class_weights(data.semantic, 5)
    assert w[0] < w[1:].min()                                       # background weighs least
    losses = train_segmenter(m, data, steps=30, batch=8, lr=1e-2)
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])
    s = evaluate_segmenter(m, data)
    assert 0 <= s["boundary_miou"] <= 1 and s["pixel_accuracy"] > 0.8
