"""Our COCO mAP equals pycocotools' COCOeval on random prediction sets."""
import contextlib
import io

import numpy as np
import pytest
import torch

from deepatlas.metrics.detection import mean_average_precision

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def random_set(seed, n_images=12, classes=3):
    g = torch.Generator().manual_seed(seed)
    targets, preds = [], []
    for _ in range(n_images):
        n = int(torch.randint(0, 5, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 40
        wh = torch.rand(n, 2, generator=g) * 15 + 2
        gt = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(1, classes + 1, (n,), generator=g)
        # predictions: jittered copies of some ground truth (various IoUs), plus random false positives
        d = int(torch.randint(0, 7, (1,), generator=g))
        src = torch.randint(0, max(n, 1), (d,), generator=g)
        jitter = torch.randn(d, 4, generator=g) * 2.0
        boxes = (gt[src] + jitter) if n else torch.rand(d, 4, generator=g) * 30
        boxes = torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)], 1)
        plabels = labels[src] if n else torch.randint(1, classes + 1, (d,), generator=g)
        flip = torch.rand(d, generator=g) < 0.2                       # some wrong classes
        plabels = torch.where(flip, torch.randint(1, classes + 1, (d,), generator=g), plabels)
        preds.append({"boxes": boxes, "scores": torch.rand(d, generator=g), "labels": plabels})
        targets.append({"boxes": gt, "labels": labels})
    return preds, targets


def coco_map(preds, targets, classes=3):
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets)):
        images.append({"id": i, "width": 64, "height": 64})
        for b, c in zip(t["boxes"].tolist(), t["labels"].tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": 0})
        for b, s, c in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
            dets.append({"image_id": i, "category_id": c, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in range(1, classes + 1)]}
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", range(6))
def test_map_equals_pycocotools(seed):
    preds, targets = random_set(seed)
    ours = mean_average_precision(preds, targets)
    stats = coco_map(preds, targets)
    assert ours["map"] == pytest.approx(stats[0], abs=1e-9)
    assert ours["map_50"] == pytest.approx(stats[1], abs=1e-9)
    assert ours["map_75"] == pytest.approx(stats[2], abs=1e-9)


def test_perfect_and_empty_predictions():
    _, targets = random_set(0)
    perfect = [{"boxes": t["boxes"], "scores": torch.ones(len(t["labels"])), "labels": t["labels"]} for t in targets]
    assert mean_average_precision(perfect, targets)["map"] == pytest.approx(1.0)
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
             for _ in targets]
    assert mean_average_precision(empty, targets)["map"] == 0.0
    with pytest.raises(ValueError, match="one per image"):
        mean_average_precision(empty[:2], targets)
