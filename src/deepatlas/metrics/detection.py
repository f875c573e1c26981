"""Detection mean average precision: COCO's mAP@[.5:.95], mAP@0.5 and mAP@0.75.

The COCO protocol (pycocotools' COCOeval, area "all", at most `max_dets` detections per image and
class), written out so each step can be read:
1. per image and class, detections by decreasing score are matched greedily to the still-unmatched
   ground-truth box of highest IoU, if that IoU ≥ t — a match is a true positive, else false;
2. per class, all detections of all images by decreasing score give the precision/recall curve:
   precision_k = TP_k / k, recall_k = TP_k / #ground truth;
3. precision is made monotone (p(r) = max over r' ≥ r) and read at 101 recalls 0, 0.01, …, 1:
   AP = mean over those of p(r) (0 past the highest recall reached);
4. mAP = mean of AP over classes with ground truth, and over t ∈ {0.5, 0.55, …, 0.95}.
The test checks it equals pycocotools on random prediction sets.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from deepatlas.vision.boxes import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)     # COCO: .50:.05:.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _match(pred_boxes: Tensor, pred_scores: Tensor, gt_boxes: Tensor, thresholds: np.ndarray,
           max_dets: int) -> tuple[np.ndarray, np.ndarray]:
    """One image, one class: (scores (D,), true-positive flags (T, D)), D ≤ max_dets detections."""
    order = np.argsort(-pred_scores.numpy(), kind="mergesort")[:max_dets]
    scores = pred_scores.numpy()[order]
    tp = np.zeros((len(thresholds), len(order)), dtype=bool)
    if len(order) == 0 or len(gt_boxes) == 0:
        return scores, tp
    iou = box_iou(pred_boxes[torch.from_numpy(order)].double(), gt_boxes.double()).numpy()   # (D, G)
    for ti, t in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), dtype=bool)
        for d in range(len(order)):
            best, best_iou = -1, min(t, 1 - 1e-10)
            for g in range(len(gt_boxes)):
                if taken[g] or iou[d, g] < best_iou:
                    continue
                best, best_iou = g, iou[d, g]
            if best >= 0:
                taken[best] = True
                tp[ti, d] = True
    return scores, tp


def average_precision(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> np.ndarray:
    """(D,) scores and (T, D) true-positive flags of one class over all images -> (T,) AP (101-point)."""
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[:, order]
    tps = np.cumsum(tp, axis=1).astype(np.float64)                 # (T, D)
    fps = np.cumsum(~tp, axis=1).astype(np.float64)
    ap = np.zeros(tp.shape[0])
    if tp.shape[1] == 0 or n_gt == 0:                              # nothing detected: precision 0 everywhere
        return ap
    for ti in range(tp.shape[0]):
        recall = tps[ti] / n_gt
        precision = tps[ti] / (tps[ti] + fps[ti] + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # p(r) = max_{r' ≥ r} p(r')
        idx = np.searchsorted(recall, RECALL_POINTS, side="left")
        sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
        ap[ti] = sampled.mean()
    return ap


def mean_average_precision(predictions: list[dict[str, Tensor]], targets: list[dict[str, Tensor]],
                           thresholds: np.ndarray = IOU_THRESHOLDS, max_dets: int = 100) -> dict[str, float]:
    """predictions: per image {"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,)}; targets: per image
    {"boxes" (G, 4), "labels" (G,)}. Returns {"map": mAP@[.5:.95], "map_50", "map_75",
    "ap_per_class": {label: AP@[.5:.95]}}; classes without ground truth are left out (as COCO does)."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} prediction sets for {len(targets)} images; need one per image")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    classes = sorted({int(c) for t in targets for c in t["labels"].tolist()})
    per_class = {}
    for c in classes:
        all_scores, all_tp, n_gt = [], [], 0
        for p, t in zip(predictions, targets):
            gt = t["boxes"][t["labels"] == c].float()
            keep = p["labels"] == c
            s, tp = _match(p["boxes"][keep].float(), p["scores"][keep].float(), gt, thresholds, max_dets)
            all_scores.append(s)
            all_tp.append(tp)
            n_gt += len(gt)
        per_class[c] = average_precision(np.concatenate(all_scores), np.concatenate(all_tp, axis=1), n_gt)
    if not per_class:
        raise ValueError("the targets hold no ground-truth boxes: mAP is undefined")
    ap = np.stack(list(per_class.values()))                         # (classes, T)

    def at(t: float) -> float:
        hit = np.flatnonzero(np.isclose(thresholds, t))
        return float(ap[:, hit[0]].mean()) if len(hit) else float("nan")

    return {"map": float(ap.mean()), "map_50": at(0.5), "map_75": at(0.75),
            "ap_per_class": {c: float(v.mean()) for c, v in per_class.items()}}
