"""The two detectors: shapes of outputs, the YOLO box parametrisation, losses that train, predictions' format."""
import torch

from deepatlas.data.shapes import shapes_dataset
from deepatlas.models.detection import OneStageDetector, TwoStageDetector
from deepatlas.vision.detection import train_detector

DATA = dict(size=32, max_objects=3)


def test_one_stage_decode_is_yolov2():
    torch.manual_seed(0)
    m = OneStageDetector(image_size=32, widths=(4, 8, 16), anchor_sizes=(0.25, 0.5))
    raw = torch.zeros(1, 8, 8, 2, 9)
    raw[0, 2, 5, 1, :4] = torch.tensor([0.0, 0.0, 0.0, 0.0])        # σ(0) = ½: the cell's centre, the anchor's size
    boxes = m.decode(raw)
    torch.testing.assert_close(boxes[0, 2, 5, 1], torch.tensor([5.5 * 4 - 8, 2.5 * 4 - 8, 5.5 * 4 + 8, 2.5 * 4 + 8]))
    raw[0, 2, 5, 1, 2] = torch.log(torch.tensor(2.0))               # e^{t_w} = 2: twice the anchor's width
    b = m.decode(raw)[0, 2, 5, 1]
    assert torch.isclose(b[2] - b[0], torch.tensor(32.0))


def test_losses_fall_and_predictions_have_the_format():
    data = shapes_dataset("train", n=32, **DATA)
    for cls in (OneStageDetector, TwoStageDetector):
        torch.manual_seed(0)
        model = cls(image_size=32, widths=(4, 8, 16))
        losses = train_detector(model, data, steps=25, batch=8, lr=5e-3)
        assert all(torch.isfinite(torch.tensor(losses)))
        assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, (cls.__name__, losses[:5], losses[-5:])
        model.eval()
        preds = model.predict(data.images[:4], score_threshold=0.0)
        assert len(preds) == 4
        for p in preds:
            n = len(p["scores"])
            assert p["boxes"].shape == (n, 4) and p["labels"].shape == (n,) and n <= 100
            assert ((p["labels"] >= 1) & (p["labels"] <= 4)).all()
            assert (p["boxes"] >= 0).all() and (p["boxes"] <= 32).all()


def test_two_stage_proposals_and_head_shapes():
    torch.manual_seed(0)
    m = TwoStageDetector(image_size=32, widths=(4, 8, 16), post_nms_test=10).eval()
    x = torch.rand(2, 3, 32, 32)
    f = m.backbone.features(x)[-1]
    obj, reg = m._rpn(f)
    assert obj.shape == (2, 8 * 8 * 3) and reg.shape == (2, 8 * 8 * 3, 4)
    props = m._proposals(obj, reg, 10)
    assert all(len(p) <= 10 and p.shape[1] == 4 for p in props)
    logits, deltas = m._head(f, props)
    assert logits.shape == (sum(map(len, props)), 5) and deltas.shape == (sum(map(len, props)), 4, 4)
