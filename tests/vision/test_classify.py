"""vision.classify: the bf16 / channels-last training path learns like the fp32 one and keeps fp32 weights."""
import pytest
import torch

from deepatlas.models.cnn import ResNet
from deepatlas.nn.conv import Conv2d
from deepatlas.vision.classify import ClassifyConfig, batch_at, load_images, train_classifier


def small_data():
    try:
        return load_images(train_size=512, test_size=256, seed=0)
    except FileNotFoundError as e:  # the Debian dataset-fashion-mnist package
        pytest.skip(f"Fashion-MNIST not installed: {e}")


@pytest.mark.parametrize("precision,channels_last", [("fp32", False), ("bf16", True)])
def test_training_learns_in_both_precisions(precision, channels_last):
    data = small_data()
    torch.manual_seed(0)
    model = ResNet(depths=(1, 1), widths=(8, 16))
    r = train_classifier(model, data, ClassifyConfig(epochs=4, batch=32, lr=0.1, augment=False,
                                                     precision=precision, channels_last=channels_last))
    assert all(p.dtype == torch.float32 for p in model.parameters())        # autocast leaves weights fp32
    conv = [m for m in model.modules() if isinstance(m, Conv2d) and m.weight.shape[1] > 1 and m.weight.shape[-1] > 1][-1]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    # chance is 10%; 64 steps on 512 images get well above it
    assert r["train_accuracy"] > 0.35 and r["test_accuracy"] > 0.3
    assert r["losses"][-1] < r["losses"][0]


def test_bf16_step_is_close_to_fp32():
    """One step's loss under bf16 autocast is within bf16 rounding of the fp32 loss."""
    data = small_data()
    x, y = batch_at(data, 0, 32, 0, augment=False)
    torch.manual_seed(0)
    model = ResNet(depths=(1, 1), widths=(8, 16)).eval()
    with torch.no_grad():
        ref = torch.nn.functional.cross_entropy(model(x), y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = torch.nn.functional.cross_entropy(model(x), y)
    assert low.dtype == torch.float32                      # the loss runs in fp32 under autocast
    assert abs(low.item() - ref.item()) < 0.02 * ref.item()


def test_unknown_precision_is_an_error():
    data = small_data()
    with pytest.raises(ValueError, match="precision"):
        train_classifier(ResNet(depths=(1,), widths=(4,)), data, ClassifyConfig(epochs=1, batch=64, precision="int3"))
