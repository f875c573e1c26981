"""Box ops vs brute-force loops: IoU, GIoU, coding round trip, anchors, NMS (plain, class-wise)."""
import math

import pytest
import torch

from deepatlas.vision.boxes import (batched_nms, box_iou, cxcywh_to_xyxy, decode_boxes, encode_boxes,
                                    generalized_box_iou, make_anchors, nms, xyxy_to_cxcywh)


def random_boxes(n, seed, size=50.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 0.5
    return torch.cat([xy, xy + wh], dim=1)


def iou_loop(a, b):
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    union = area(a) + area(b) - inter
    cx0, cy0, cx1, cy1 = min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])
    c = (cx1 - cx0) * (cy1 - cy0)
    return inter / union, inter / union - (c - union) / c


def test_iou_giou_equal_loops():
    a, b = random_boxes(13, 0).double(), random_boxes(9, 1).double()
    iou, giou = box_iou(a, b), generalized_box_iou(a, b)
    for i in range(13):
        for j in range(9):
            ref_iou, ref_giou = iou_loop(a[i].tolist(), b[j].tolist())
            assert math.isclose(iou[i, j].item(), ref_iou, abs_tol=1e-12)
            assert math.isclose(giou[i, j].item(), ref_giou, abs_tol=1e-12)
    assert (iou > 0).any() and (giou < 0).any()          # overlapping and disjoint pairs both occur
    torch.testing.assert_close(box_iou(a, a).diagonal(), torch.ones(13, dtype=torch.float64))


def test_formats_and_coding_round_trip():
    b = random_boxes(20, 2)
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)
    anchors = random_boxes(20, 3)
    for w in [(1, 1, 1, 1), (10, 10, 5, 5)]:
        t = encode_boxes(anchors, b, w)
        torch.testing.assert_close(decode_boxes(anchors, t, w), b, atol=1e-4, rtol=1e-5)
    t = encode_boxes(anchors, anchors)
    torch.testing.assert_close(t, torch.zeros_like(t), atol=1e-6, rtol=0)


def test_anchors_layout():
    a = make_anchors((3, 4), stride=8, sizes=(8, 16), ratios=(0.5, 1.0, 2.0))
    assert a.shape == (3 * 4 * 6, 4)
    c = xyxy_to_cxcywh(a)
    # anchor 6·(i·4 + j) + k sits at cell (i, j)'s centre
    assert c[6 * (1 * 4 + 2), :2].tolist() == [2.5 * 8, 1.5 * 8]
    torch.testing.assert_close(c[:6, 2] * c[:6, 3], torch.tensor([64.0] * 3 + [256.0] * 3))
    torch.testing.assert_close(c[:3, 3] / c[:3, 2], torch.tensor([0.5, 1.0, 2.0]))


def nms_loop(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(iou_loop(boxes[i], boxes[k])[0] <= thr for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_equals_greedy_loop(seed):
    boxes = random_boxes(60, seed, size=30.0)
    scores = torch.rand(60, generator=torch.Generator().manual_seed(100 + seed))
    for thr in (0.3, 0.5, 0.7):
        keep = nms(boxes, scores, thr)
        assert keep.tolist() == nms_loop(boxes.tolist(), scores.tolist(), thr)
    assert len(nms(boxes, scores, 0.3)) < 60


def test_batched_nms_is_per_class():
    boxes = random_boxes(80, 7, size=30.0)
    scores = torch.rand(80, generator=torch.Generator().manual_seed(8))
    classes = torch.randint(0, 3, (80,), generator=torch.Generator().manual_seed(9))
    keep = batched_nms(boxes, scores, classes, 0.5)
    ref = []
    for c in range(3):
        idx = torch.nonzero(classes == c).flatten()
        ref += idx[nms(boxes[idx], scores[idx], 0.5)].tolist()
    assert sorted(keep.tolist()) == sorted(ref)
    assert scores[keep].tolist() == sorted(scores[keep].tolist(), reverse=True)
    assert len(keep) > len(nms(boxes, scores, 0.5))                 # other classes do not suppress


def test_errors_and_empty():
    with pytest.raises(ValueError, match=r"boxes \(N, 4\)"):
        box_iou(torch.zeros(3, 5), torch.zeros(2, 4))
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
