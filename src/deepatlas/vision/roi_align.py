"""RoIAlign (He et al. 2017, Mask R-CNN §3): a fixed-size feature of any box, without rounding.

RoIPool (Fast R-CNN) snaps the box and its bins to the feature grid, so the pooled feature is
misaligned by up to a stride. RoIAlign keeps the box's real coordinates: it divides the box into
out_h × out_w bins, samples `sampling_ratio`² regularly spaced points in each bin by bilinear
interpolation of the four nearest feature cells, and averages them. The sampling rule (points at
−1…H clamp to the border, outside that they read 0; aligned=True shifts by half a pixel) is
torchvision's, whose op this replaces; the test compares it with a direct per-point loop.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _bilinear_weights(coord: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """For sample coordinates along one axis: (low index, high index, low weight, high weight, valid)."""
    valid = (coord >= -1.0) & (coord <= size)
    c = coord.clamp(min=0.0)
    low = c.floor().long().clamp(max=size - 1)
    high = (low + 1).clamp(max=size - 1)
    c = torch.where(low >= size - 1, low.to(c.dtype), c)            # at the last cell: no interpolation
    frac = c - low.to(c.dtype)
    return low, high, 1.0 - frac, frac, valid


def roi_align(features: Tensor, rois: Tensor, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
              sampling_ratio: int = 2, aligned: bool = True) -> Tensor:
    """features (B, C, H, W), rois (K, 5) rows (batch index, x0, y0, x1, y1) in image pixels
    -> (K, C, out_h, out_w). spatial_scale maps image pixels to feature cells (1/stride)."""
    if features.dim() != 4:
        raise ValueError(f"roi_align expects features (B, C, H, W), got {tuple(features.shape)}")
    if rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError(f"roi_align expects rois (K, 5) = (batch index, x0, y0, x1, y1), got {tuple(rois.shape)}")
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio {sampling_ratio}; must be ≥ 1 points per bin side")
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    B, C, H, W = features.shape
    K = rois.size(0)
    if K == 0:
        return features.new_zeros(0, C, oh, ow)
    offset = 0.5 if aligned else 0.0
    b = rois[:, 0].long()
    x0, y0 = rois[:, 1] * spatial_scale - offset, rois[:, 2] * spatial_scale - offset
    x1, y1 = rois[:, 3] * spatial_scale - offset, rois[:, 4] * spatial_scale - offset
    rw, rh = x1 - x0, y1 - y0
    if not aligned:                                                 # the legacy op forces ≥ 1 cell
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    s = sampling_ratio
    # sample point p of bin i along an axis: start + (i + (p + ½)/s) · roi_size / bins      (K, bins·s)
    ty = (torch.arange(oh * s, dtype=features.dtype) + 0.5) / s     # in bin units
    tx = (torch.arange(ow * s, dtype=features.dtype) + 0.5) / s
    ys = y0[:, None] + ty[None, :] * (rh / oh)[:, None]              # (K, oh·s)
    xs = x0[:, None] + tx[None, :] * (rw / ow)[:, None]              # (K, ow·s)
    # bilinear interpolation and the regular sampling grid are both separable, so the pooled feature
    # of box k is  A_y(k) · F · A_x(k)ᵀ  with A_y (out_h, H): row i = the mean over bin i's s sample
    # rows of their interpolation weights (two non-zeros each), and A_x (out_w, W) alike
    ay = _axis_matrix(ys, H, oh, s)                                 # (K, oh, H)
    ax = _axis_matrix(xs, W, ow, s)                                 # (K, ow, W)
    f = features.index_select(0, b)                                 # (K, C, H, W)
    return torch.einsum("kih,kchw,kjw->kcij", ay, f, ax)            # (K, C, oh, ow)


def _axis_matrix(coord: Tensor, size: int, bins: int, s: int) -> Tensor:
    """coord (K, bins·s) sample positions along one axis -> (K, bins, size) averaged interpolation weights."""
    low, high, w_low, w_high, valid = _bilinear_weights(coord, size)
    K = coord.size(0)
    m = coord.new_zeros(K, bins * s, size)
    m.scatter_add_(2, low[..., None], (w_low * valid)[..., None])
    m.scatter_add_(2, high[..., None], (w_high * valid)[..., None])
    return m.view(K, bins, s, size).mean(dim=2)
