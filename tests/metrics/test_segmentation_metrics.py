"""mIoU / pixel accuracy from the confusion matrix vs a direct per-class computation and torchmetrics."""
import pytest
import torch

from deepatlas.metrics.segmentation import boundary_band, confusion_matrix, iou_per_class, scores, segmentation_scores


def random_maps(seed, K=5):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, K, (4, 16, 16), generator=g)
    noise = torch.randint(0, K, (4, 16, 16), generator=g)
    pred = torch.where(torch.rand(4, 16, 16, generator=g) < 0.6, target, noise)
    return pred, target


@pytest.mark.parametrize("seed", range(3))
def test_confusion_scores_equal_direct(seed):
    pred, target = random_maps(seed)
    m = confusion_matrix(pred, target, 5)
    assert m.sum() == target.numel()
    for c in range(5):
        tp = ((pred == c) & (target == c)).sum().item()
        union = ((pred == c) | (target == c)).sum().item()
        assert iou_per_class(m)[c].item() == pytest.approx(tp / union)
    s = scores(m)
    direct = torch.tensor([((pred == c) & (target == c)).sum() / ((pred == c) | (target == c)).sum()
                           for c in range(5)]).mean()
    assert s["miou"] == pytest.approx(direct.item())
    assert s["pixel_accuracy"] == pytest.approx((pred == target).float().mean().item())


@pytest.mark.parametrize("seed", range(3))
def test_equal_torchmetrics(seed):
    tm = pytest.importorskip("torchmetrics")
    from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassJaccardIndex

    pred, target = random_maps(seed)
    m = confusion_matrix(pred, target, 5)
    assert torch.equal(m, MulticlassConfusionMatrix(5)(pred.flatten(), target.flatten()))
    s = scores(m)
    assert s["miou"] == pytest.approx(MulticlassJaccardIndex(5, average="macro")(pred, target).item(), abs=1e-6)
    assert s["pixel_accuracy"] == pytest.approx(MulticlassAccuracy(5, average="micro")(pred, target).item(), abs=1e-6)
    assert s["mean_accuracy"] == pytest.approx(MulticlassAccuracy(5, average="macro")(pred, target).item(), abs=1e-6)
    assert tm is not None


def test_absent_class_and_boundary():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    band = boundary_band(target, 1)
    # the 4×4 square's edge ±1 pixel: the 6×6 ring minus the 2×2 interior
    assert band.sum() == 6 * 6 - 2 * 2 and not band[0, 0, 0] and not band[0, 3, 3]
    pred = target.clone()
    pred[0, 2:6, 2] = 0                                   # erode one column: an error on the boundary
    s = segmentation_scores(pred, target, num_classes=3)  # class 2 absent from both: left out of the mean
    assert s["pixel_accuracy"] == pytest.approx(1 - 4 / 64)
    assert s["boundary_accuracy"] == pytest.approx(1 - 4 / 32)
    assert s["miou"] == pytest.approx((48 / 52 + 12 / 16) / 2)
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        confusion_matrix(torch.full((2, 2), 3), torch.zeros(2, 2), 3)
