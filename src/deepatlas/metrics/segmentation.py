"""Semantic segmentation scores from one confusion matrix: mIoU, pixel accuracy, boundary quality.

confusion[i, j] = pixels of true class i predicted as class j. Then, per class c,
    IoU_c = TP_c / (TP_c + FP_c + FN_c) = M[c, c] / (Σ_j M[c, j] + Σ_i M[i, c] − M[c, c]),
mIoU is their mean over the classes present in the truth or the prediction, and pixel accuracy is
trace(M) / ΣM (Long et al. 2015, FCN §5 "metrics"). Boundary quality: the same scores on the band
of pixels within `width` pixels of a true class boundary, where a missing skip connection shows.
Checked against a direct per-class computation and torchmetrics (tests/metrics/test_segmentation.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, mask: Tensor | None = None) -> Tensor:
    """pred, target: integer label maps of the same shape (any dims) -> (num_classes, num_classes) int64.
    Only pixels where `mask` is True count (all by default)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} shapes differ")
    p, t = pred.reshape(-1).long(), target.reshape(-1).long()
    if mask is not None:
        keep = mask.reshape(-1).bool()
        p, t = p[keep], t[keep]
    bad = (t < 0) | (t >= num_classes) | (p < 0) | (p >= num_classes)
    if bad.any():
        raise ValueError(f"labels must lie in 0..{num_classes - 1}; found "
                         f"{sorted(set(t[bad].tolist()) | set(p[bad].tolist()))[:5]}")
    # one bincount over the pair index true·K + predicted
    return torch.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou_per_class(confusion: Tensor) -> Tensor:
    """(K,) IoU per class; NaN for a class absent from both truth and prediction."""
    m = confusion.double()
    tp = m.diagonal()
    denom = m.sum(1) + m.sum(0) - tp                                # TP + FN + FP
    return torch.where(denom > 0, tp / denom.clamp(min=1), torch.full_like(tp, float("nan")))


def scores(confusion: Tensor) -> dict[str, float]:
    """{"miou", "pixel_accuracy", "mean_accuracy"} from a confusion matrix."""
    m = confusion.double()
    iou = iou_per_class(confusion)
    per_class_acc = m.diagonal() / m.sum(1)                         # NaN where the class is absent
    return {"miou": float(iou[~iou.isnan()].mean()), "pixel_accuracy": float(m.diagonal().sum() / m.sum()),
            "mean_accuracy": float(per_class_acc[~per_class_acc.isnan()].mean())}


def boundary_band(target: Tensor, width: int = 1) -> Tensor:
    """(B, H, W) labels -> (B, H, W) bool: pixels within `width` (chessboard distance) of a pixel of
    another class — the class boundaries, both sides."""
    t = target.float().unsqueeze(1)                                 # (B, 1, H, W)
    k = 2 * width + 1
    hi = F.max_pool2d(F.pad(t, (width,) * 4, mode="replicate"), k, stride=1)
    lo = -F.max_pool2d(F.pad(-t, (width,) * 4, mode="replicate"), k, stride=1)
    return (hi != lo).squeeze(1)                                    # a different label nearby


def segmentation_scores(pred: Tensor, target: Tensor, num_classes: int, boundary_width: int = 1) -> dict[str, float]:
    """pred, target (B, H, W): mIoU, pixel accuracy, and the boundary band's mIoU and accuracy."""
    whole = scores(confusion_matrix(pred, target, num_classes))
    band = scores(confusion_matrix(pred, target, num_classes, boundary_band(target, boundary_width)))
    return {**whole, "boundary_miou": band["miou"], "boundary_accuracy": band["pixel_accuracy"]}
