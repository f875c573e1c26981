"""Two detector families on the A1 ResNet backbone (models/cnn.py): one-stage and two-stage (V4).

One-stage, YOLO-style (Redmon et al. 2016; anchors and the σ/exp box parametrisation of YOLOv2,
Redmon & Farhadi 2017 §"Direct location prediction"): the last feature map is a grid; every cell
and anchor predicts at once a box, an objectness and class scores — one pass, no proposals.

Two-stage, R-CNN family. R-CNN (Girshick et al. 2014) warped ~2000 selective-search regions and ran
a CNN on each; Fast R-CNN (Girshick 2015) ran the CNN once and pooled each region's features from
the shared map (RoIPool) into a box head that classifies and refines the box; Faster R-CNN (Ren et
al. 2015) replaced selective search by a region proposal network (RPN) on the same map. This is
that last design with Mask R-CNN's RoIAlign (vision/roi_align.py) in place of RoIPool:
backbone → RPN (objectness + box deltas per anchor) → top proposals after NMS → RoIAlign → box head.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.cnn import ResNet, conv_bn
from deepatlas.nn.conv import Conv2d
from deepatlas.vision.boxes import batched_nms, box_iou, clip_boxes, decode_boxes, encode_boxes, make_anchors, nms
from deepatlas.vision.roi_align import roi_align

PRIOR_LOGIT = -math.log((1 - 0.01) / 0.01)   # σ(b) = 0.01
Targets = list[dict[str, Tensor]]          # per image {"boxes": (G, 4) xyxy pixels, "labels": (G,) in 1..K}


def _backbone(depths: Sequence[int], widths: Sequence[int]) -> ResNet:
    net = ResNet(depths=tuple(depths), widths=tuple(widths), in_channels=3, num_classes=1)
    net.head = nn.Identity()                                        # features only
    return net


def _pack(boxes: Tensor, scores: Tensor, labels: Tensor, keep: Tensor, max_dets: int) -> dict[str, Tensor]:
    keep = keep[:max_dets]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


class OneStageDetector(nn.Module):
    """YOLO-style: per grid cell (i, j) and anchor a, (t_x, t_y, t_w, t_h, objectness, K class logits).

    Box (YOLOv2):  b_x = (j + σ(t_x))·stride,  b_y = (i + σ(t_y))·stride,  b_w = p_w·e^{t_w},  b_h = p_h·e^{t_h}
    Score of class c:  σ(objectness) · softmax(class logits)_c."""

    def __init__(self, num_classes: int = 4, image_size: int = 32, depths: Sequence[int] = (1, 1, 1),
                 widths: Sequence[int] = (16, 32, 64), anchor_sizes: Sequence[float] = (0.18, 0.28, 0.42)):
        super().__init__()
        self.num_classes, self.image_size = num_classes, image_size
        self.backbone = _backbone(depths, widths)
        self.stride = 2 ** (len(widths) - 1)
        if image_size % self.stride:
            raise ValueError(f"image_size {image_size} must be a multiple of the backbone stride {self.stride}")
        self.grid = image_size // self.stride
        self.A = len(anchor_sizes)
        c = self.backbone.out_channels
        self.head = nn.Sequential(conv_bn(c, c, 3), Conv2d(c, self.A * (5 + num_classes), 1))
        with torch.no_grad():   # objectness starts at the prior π = 0.01 (Lin et al. 2017 §4.1), not ½:
            self.head[1].bias.view(self.A, 5 + num_classes)[:, 4] = PRIOR_LOGIT   # the many empty cells stop dominating
        sizes = torch.tensor([s * image_size for s in anchor_sizes], dtype=torch.float32)
        self.register_buffer("anchor_wh", torch.stack([sizes, sizes], dim=1), persistent=False)   # (A, 2)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) -> raw predictions (B, g, g, A, 5 + K)."""
        f = self.backbone.features(x)[-1]                           # (B, C, g, g)
        out = self.head(f)                                          # (B, A·(5+K), g, g)
        B, _, g, _ = out.shape
        return out.view(B, self.A, 5 + self.num_classes, g, g).permute(0, 3, 4, 1, 2)

    def decode(self, raw: Tensor) -> Tensor:
        """raw (B, g, g, A, 5+K) -> boxes (B, g, g, A, 4) xyxy pixels."""
        g = raw.size(1)
        ii, jj = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        cx = (jj[..., None] + raw[..., 0].sigmoid()) * self.stride  # (B, g, g, A)
        cy = (ii[..., None] + raw[..., 1].sigmoid()) * self.stride
        w = self.anchor_wh[:, 0] * raw[..., 2].clamp(max=4).exp()
        h = self.anchor_wh[:, 1] * raw[..., 3].clamp(max=4).exp()
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)

    def loss(self, x: Tensor, targets: Targets) -> Tensor:
        """YOLOv3-style: each ground-truth box belongs to the cell holding its centre and the anchor
        whose shape fits it best (IoU of centred boxes). There: BCE on σ(t_x), σ(t_y) vs the centre's
        offset in the cell, squared error on t_w, t_h vs log(g_w / p_w), cross-entropy on the class,
        objectness 1. Elsewhere objectness 0, except anchors whose box already overlaps a
        ground truth by IoU > 0.5 (ignored). Sums over anchors, divided by the batch size."""
        raw = self(x)                                               # (B, g, g, A, 5+K)
        B, g = raw.size(0), raw.size(1)
        boxes = self.decode(raw.detach())
        obj_target = torch.zeros(raw.shape[:4])
        obj_weight = torch.ones(raw.shape[:4])
        pos_xy, pos_raw, pos_wh, pos_cls = [], [], [], []
        for b, t in enumerate(targets):
            gt, labels = t["boxes"].float(), t["labels"]
            if len(gt) == 0:
                continue
            ignore = box_iou(boxes[b].reshape(-1, 4), gt).max(dim=1).values > 0.5
            obj_weight[b].view(-1)[ignore] = 0.0
            gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
            gx, gy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
            inter = torch.minimum(gw[:, None], self.anchor_wh[None, :, 0]) * torch.minimum(gh[:, None], self.anchor_wh[None, :, 1])
            shape_iou = inter / (gw[:, None] * gh[:, None] + self.anchor_wh.prod(1)[None] - inter)   # (G, A)
            a = shape_iou.argmax(dim=1)
            j = (gx / self.stride).long().clamp(0, g - 1)
            i = (gy / self.stride).long().clamp(0, g - 1)
            obj_target[b, i, j, a] = 1.0
            obj_weight[b, i, j, a] = 1.0
            pos_raw.append(raw[b, i, j, a])                         # (G, 5+K)
            pos_xy.append(torch.stack([gx / self.stride - j, gy / self.stride - i], dim=1))
            pos_wh.append(torch.stack([torch.log(gw / self.anchor_wh[a, 0]), torch.log(gh / self.anchor_wh[a, 1])], 1))
            pos_cls.append(labels - 1)
        obj = F.binary_cross_entropy_with_logits(raw[..., 4], obj_target, weight=obj_weight, reduction="sum")
        if not pos_raw:
            return obj / B
        p = torch.cat(pos_raw)
        xy = F.binary_cross_entropy_with_logits(p[:, :2], torch.cat(pos_xy).clamp(0, 1), reduction="sum")
        wh = F.mse_loss(p[:, 2:4], torch.cat(pos_wh), reduction="sum")
        cls = F.cross_entropy(p[:, 5:], torch.cat(pos_cls), reduction="sum")
        return (obj + xy + wh + cls) / B

    @torch.no_grad()
    def predict(self, x: Tensor, score_threshold: float = 0.05, iou_threshold: float = 0.5,
                max_dets: int = 100) -> Targets:
        """Per image {"boxes", "scores", "labels"}: every (anchor, class) above the threshold, class-wise NMS."""
        raw = self(x)
        B = raw.size(0)
        boxes = clip_boxes(self.decode(raw), self.image_size, self.image_size).reshape(B, -1, 4)
        scores = raw[..., 4].sigmoid()[..., None] * raw[..., 5:].softmax(-1)        # (B, g, g, A, K)
        scores = scores.reshape(B, -1, self.num_classes)
        out = []
        for b in range(B):
            n, c = torch.nonzero(scores[b] > score_threshold, as_tuple=True)
            bx, sc, lab = boxes[b, n], scores[b, n, c], c + 1
            out.append(_pack(bx, sc, lab, batched_nms(bx, sc, lab, iou_threshold), max_dets))
        return out


class TwoStageDetector(nn.Module):
    """Faster R-CNN-style: RPN proposals → RoIAlign (out × out from the stride-s map) → two FC layers →
    class scores (K + 1 with the background) and class-specific box deltas."""

    BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)                            # Fast R-CNN's target scaling

    def __init__(self, num_classes: int = 4, image_size: int = 32, depths: Sequence[int] = (1, 1, 1),
                 widths: Sequence[int] = (16, 32, 64), anchor_sizes: Sequence[float] = (0.18, 0.28, 0.42),
                 roi_size: int = 4, hidden: int = 128, pre_nms: int = 100, post_nms_train: int = 32,
                 post_nms_test: int = 24, rois_per_image: int = 32, fg_fraction: float = 0.5):
        super().__init__()
        self.num_classes, self.image_size, self.roi_size = num_classes, image_size, roi_size
        self.pre_nms, self.post_nms_train, self.post_nms_test = pre_nms, post_nms_train, post_nms_test
        self.rois_per_image, self.fg_fraction = rois_per_image, fg_fraction
        self.backbone = _backbone(depths, widths)
        self.stride = 2 ** (len(widths) - 1)
        if image_size % self.stride:
            raise ValueError(f"image_size {image_size} must be a multiple of the backbone stride {self.stride}")
        g = image_size // self.stride
        self.A = len(anchor_sizes)
        c = self.backbone.out_channels
        self.rpn_conv = conv_bn(c, c, 3)
        self.rpn_obj = Conv2d(c, self.A, 1)
        nn.init.constant_(self.rpn_obj.bias, PRIOR_LOGIT)
        self.rpn_reg = Conv2d(c, 4 * self.A, 1)
        self.register_buffer("anchors", make_anchors((g, g), self.stride, [s * image_size for s in anchor_sizes]),
                             persistent=False)                     # (g·g·A, 4)
        self.box_head = nn.Sequential(nn.Flatten(), nn.Linear(c * roi_size * roi_size, hidden), nn.ReLU(inplace=True),
                                      nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
        self.cls_score = nn.Linear(hidden, num_classes + 1)
        self.bbox_pred = nn.Linear(hidden, 4 * num_classes)

    # ---- stage 1: region proposals
    def _rpn(self, f: Tensor) -> tuple[Tensor, Tensor]:
        h = self.rpn_conv(f)
        B = f.size(0)
        obj = self.rpn_obj(h).permute(0, 2, 3, 1).reshape(B, -1)                     # (B, g·g·A), cell-major
        reg = self.rpn_reg(h).view(B, self.A, 4, h.size(2), h.size(3)).permute(0, 3, 4, 1, 2).reshape(B, -1, 4)
        return obj, reg

    def _proposals(self, obj: Tensor, reg: Tensor, post_nms: int) -> list[Tensor]:
        """Per image: decode every anchor, keep the pre_nms best, NMS at 0.7, keep post_nms."""
        out = []
        for b in range(obj.size(0)):
            boxes = clip_boxes(decode_boxes(self.anchors, reg[b].detach()), self.image_size, self.image_size)
            scores = obj[b].detach()
            wide = ((boxes[:, 2] - boxes[:, 0]) > 1) & ((boxes[:, 3] - boxes[:, 1]) > 1)
            boxes, scores = boxes[wide], scores[wide]
            top = scores.topk(min(self.pre_nms, len(scores))).indices
            keep = nms(boxes[top], scores[top], 0.7)[:post_nms]
            out.append(boxes[top][keep])
        return out

    # ---- stage 2: the box head on pooled regions
    def _head(self, f: Tensor, proposals: list[Tensor]) -> tuple[Tensor, Tensor]:
        rois = torch.cat([torch.cat([torch.full((len(p), 1), float(b)), p], 1) for b, p in enumerate(proposals)])
        pooled = roi_align(f, rois, self.roi_size, spatial_scale=1.0 / self.stride, sampling_ratio=2)   # (R, C, r, r)
        h = self.box_head(pooled)
        return self.cls_score(h), self.bbox_pred(h).view(-1, self.num_classes, 4)

    @staticmethod
    def _sample(labels: Tensor, n: int, fg_fraction: float) -> Tensor:
        """Indices of ≤ n entries: at most fg_fraction·n with label 1 (random), the rest label 0."""
        pos = torch.nonzero(labels == 1).flatten()
        neg = torch.nonzero(labels == 0).flatten()
        pos = pos[torch.randperm(len(pos))[:int(n * fg_fraction)]]
        neg = neg[torch.randperm(len(neg))[:n - len(pos)]]
        return torch.cat([pos, neg])

    def loss(self, x: Tensor, targets: Targets) -> Tensor:
        """L = L_rpn(objectness BCE + smooth-L1 deltas) + L_head(cross-entropy + smooth-L1 of the true
        class's deltas), Ren et al. 2015 eq. (1) for both stages. RPN anchors: positive at IoU ≥ 0.5
        with a ground truth (0.7 in the paper, lowered for these few-pixel boxes) or the best anchor of
        a ground truth, negative below 0.3; 64 sampled per image, half positive at most. Head:
        proposals plus the ground-truth boxes; foreground at IoU ≥ 0.5, the rest background."""
        f = self.backbone.features(x)[-1]                           # (B, C, g, g)
        obj, reg = self._rpn(f)
        rpn_obj_loss, rpn_box_loss, n_rpn = obj.new_zeros(()), obj.new_zeros(()), 0
        for b, t in enumerate(targets):
            gt = t["boxes"].float()
            labels = torch.zeros(len(self.anchors))
            if len(gt):
                iou = box_iou(self.anchors, gt)                     # (N, G)
                best, match = iou.max(dim=1)
                labels = torch.full((len(self.anchors),), -1.0)
                labels[best < 0.3] = 0.0
                labels[best >= 0.5] = 1.0
                labels[iou.argmax(dim=0)] = 1.0
            idx = self._sample(labels, 64, 0.5)
            rpn_obj_loss = rpn_obj_loss + F.binary_cross_entropy_with_logits(obj[b, idx], labels[idx], reduction="sum")
            pos = idx[labels[idx] == 1]
            if len(pos):
                target = encode_boxes(self.anchors[pos], gt[match[pos]])
                rpn_box_loss = rpn_box_loss + F.smooth_l1_loss(reg[b, pos], target, beta=1 / 9, reduction="sum")
            n_rpn += len(idx)
        proposals = self._proposals(obj, reg, self.post_nms_train)
        rois, roi_labels, roi_targets = [], [], []
        for b, t in enumerate(targets):
            gt, gl = t["boxes"].float(), t["labels"]
            p = torch.cat([proposals[b], gt])                       # the ground truth joins the proposals
            if len(gt):
                best, match = box_iou(p, gt).max(dim=1)
                fg = (best >= 0.5).float()
            else:
                match, fg = torch.zeros(len(p), dtype=torch.long), torch.zeros(len(p))
            idx = self._sample(fg, self.rois_per_image, self.fg_fraction)
            rois.append(p[idx])
            cls = torch.where(fg[idx] == 1, gl[match[idx]] if len(gt) else 0, 0)
            roi_labels.append(cls)
            roi_targets.append(encode_boxes(p[idx], gt[match[idx]], self.BOX_WEIGHTS) if len(gt)
                               else torch.zeros(len(idx), 4))
        logits, deltas = self._head(f, rois)
        labels, targets_t = torch.cat(roi_labels), torch.cat(roi_targets)
        head_cls = F.cross_entropy(logits, labels)
        fg = torch.nonzero(labels > 0).flatten()
        head_box = (F.smooth_l1_loss(deltas[fg, labels[fg] - 1], targets_t[fg], beta=1.0, reduction="sum")
                    / max(1, len(labels))) if len(fg) else logits.new_zeros(())
        return (rpn_obj_loss + rpn_box_loss) / max(1, n_rpn) + head_cls + head_box

    @torch.no_grad()
    def predict(self, x: Tensor, score_threshold: float = 0.05, iou_threshold: float = 0.5,
                max_dets: int = 100) -> Targets:
        f = self.backbone.features(x)[-1]
        obj, reg = self._rpn(f)
        proposals = self._proposals(obj, reg, self.post_nms_test)
        logits, deltas = self._head(f, proposals)
        probs = logits.softmax(-1)[:, 1:]                           # (R, K) without the background
        out, start = [], 0
        for p in proposals:
            R = len(p)
            pr, dl = probs[start:start + R], deltas[start:start + R]
            start += R
            boxes = decode_boxes(p.repeat_interleave(self.num_classes, 0), dl.reshape(-1, 4), self.BOX_WEIGHTS)
            boxes = clip_boxes(boxes, self.image_size, self.image_size).view(R, self.num_classes, 4)
            n, c = torch.nonzero(pr > score_threshold, as_tuple=True)
            bx, sc, lab = boxes[n, c], pr[n, c], c + 1
            out.append(_pack(bx, sc, lab, batched_nms(bx, sc, lab, iou_threshold), max_dets))
        return out


DETECTORS = {"one-stage": OneStageDetector, "two-stage": TwoStageDetector}
