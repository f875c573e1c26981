"""Box geometry for detection (V4): formats, IoU and GIoU, anchors, box coding, NMS.

Boxes are (x0, y0, x1, y1) in pixels unless named otherwise ("xyxy"); "cxcywh" is centre and size.
No torchvision: every op here is a few lines of tensor code, checked against brute-force loops
(tests/vision/test_boxes.py).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def _check_boxes(b: Tensor, name: str) -> None:
    if not isinstance(b, Tensor) or b.dim() != 2 or b.size(-1) != 4:
        shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
        raise ValueError(f"{name} expects boxes (N, 4), got {shape}")


def xyxy_to_cxcywh(b: Tensor) -> Tensor:
    """(..., 4) corners -> (..., 4) centre x, centre y, width, height."""
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_area(b: Tensor) -> Tensor:
    """(N, 4) -> (N,); an inverted box has area 0."""
    return (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)


def _inter_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])              # (N, M, 2) top-left of the overlap
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])              # (N, M, 2) bottom-right
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]                                 # (N, M)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter, union


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, 4), (M, 4) -> (N, M):  IoU = |A ∩ B| / |A ∪ B|  (0 where the union is empty)."""
    _check_boxes(a, "box_iou")
    _check_boxes(b, "box_iou")
    inter, union = _inter_union(a, b)
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, 4), (M, 4) -> (N, M).  Rezatofighi et al. 2019, eq. (1):
    GIoU = IoU − |C \\ (A ∪ B)| / |C|, with C the smallest box enclosing A and B; in [−1, 1]."""
    _check_boxes(a, "generalized_box_iou")
    _check_boxes(b, "generalized_box_iou")
    inter, union = _inter_union(a, b)
    iou = inter / union.clamp(min=1e-12)
    lt = torch.minimum(a[:, None, :2], b[None, :, :2])
    rb = torch.maximum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclose = wh[..., 0] * wh[..., 1]                               # |C|  (N, M)
    return iou - (enclose - union) / enclose.clamp(min=1e-12)


def clip_boxes(b: Tensor, height: int, width: int) -> Tensor:
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([x0.clamp(0, width), y0.clamp(0, height), x1.clamp(0, width), y1.clamp(0, height)], dim=-1)


# ---------------------------------------------------------------- anchors and box coding

def make_anchors(grid: tuple[int, int], stride: float, sizes: Sequence[float],
                 ratios: Sequence[float] = (1.0,)) -> Tensor:
    """Anchors of a (gh, gw) feature map: at every cell centre ((j + ½)·stride, (i + ½)·stride),
    one box per (size, ratio) with area size² and height/width = ratio (Ren et al. 2015 §3.1.1).
    Returns (gh·gw·A, 4) xyxy, cell-major: anchor a of cell (i, j) is row (i·gw + j)·A + a."""
    gh, gw = grid
    shapes = []
    for s in sizes:
        for r in ratios:
            w = s / math.sqrt(r)
            shapes.append((w, w * r))
    wh = torch.tensor(shapes, dtype=torch.float32)                               # (A, 2)
    ys = (torch.arange(gh, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(gw, dtype=torch.float32) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")                               # (gh, gw)
    centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)                    # (gh·gw, 1, 2)
    boxes = torch.cat([centres - wh / 2, centres + wh / 2], dim=-1)              # (gh·gw, A, 4)
    return boxes.reshape(-1, 4)


def encode_boxes(anchors: Tensor, boxes: Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Regression targets of `boxes` relative to `anchors` (both (N, 4) xyxy), Girshick et al. 2014
    (R-CNN, appendix C):  t_x = (g_x − a_x)/a_w,  t_y = (g_y − a_y)/a_h,  t_w = log(g_w/a_w),  t_h = log(g_h/a_h);
    each scaled by its weight (Fast R-CNN's box head uses (10, 10, 5, 5))."""
    a, g = xyxy_to_cxcywh(anchors), xyxy_to_cxcywh(boxes)
    wx, wy, ww, wh = weights
    return torch.stack([wx * (g[:, 0] - a[:, 0]) / a[:, 2], wy * (g[:, 1] - a[:, 1]) / a[:, 3],
                        ww * torch.log(g[:, 2] / a[:, 2]), wh * torch.log(g[:, 3] / a[:, 3])], dim=-1)


_MAX_LOG_SCALE = math.log(1000.0 / 16)   # as in Detectron: exp() of a wild prediction stays finite


def decode_boxes(anchors: Tensor, deltas: Tensor, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """The inverse of encode_boxes: anchors (N, 4) and deltas (N, 4) -> boxes (N, 4) xyxy."""
    a = xyxy_to_cxcywh(anchors)
    wx, wy, ww, wh = weights
    cx = a[:, 0] + deltas[:, 0] / wx * a[:, 2]
    cy = a[:, 1] + deltas[:, 1] / wy * a[:, 3]
    w = a[:, 2] * torch.exp((deltas[:, 2] / ww).clamp(max=_MAX_LOG_SCALE))
    h = a[:, 3] * torch.exp((deltas[:, 3] / wh).clamp(max=_MAX_LOG_SCALE))
    return cxcywh_to_xyxy(torch.stack([cx, cy, w, h], dim=-1))


# ---------------------------------------------------------------- non-maximum suppression

def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: take the highest-scoring box, drop every box overlapping it with IoU > threshold,
    repeat. Returns the kept indices (int64), by decreasing score. Ties keep the lower index."""
    _check_boxes(boxes, "nms")
    if boxes.size(0) == 0:
        return torch.zeros(0, dtype=torch.int64)
    order = torch.sort(scores, descending=True, stable=True).indices
    overlaps = (box_iou(boxes[order], boxes[order]) > iou_threshold).numpy()   # (N, N) in score order
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):                                     # the greedy pass is sequential
        if not suppressed[i]:
            keep.append(i)
            suppressed |= overlaps[i]
    return order[torch.tensor(keep, dtype=torch.int64)]


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each group (class, or image × class) only: shift each group's boxes by its own
    offset larger than every coordinate so boxes of different groups never overlap, then one NMS."""
    _check_boxes(boxes, "batched_nms")
    if boxes.size(0) == 0:
        return torch.zeros(0, dtype=torch.int64)
    offset = groups.to(boxes.dtype)[:, None] * (boxes.max() - boxes.min() + 1)   # (N, 1)
    return nms(boxes - boxes.min() + offset, scores, iou_threshold)
