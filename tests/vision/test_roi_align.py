"""RoIAlign vs a direct per-sample-point bilinear loop (torchvision's sampling rule)."""
import math

import pytest
import torch

from deepatlas.vision.roi_align import roi_align


def bilinear(f, y, x):
    """f (C, H, W) at real (y, x): 0 outside [−1, H] × [−1, W], clamped to the border inside that."""
    C, H, W = f.shape
    if y < -1 or y > H or x < -1 or x > W:
        return torch.zeros(C, dtype=f.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= H - 1:
        y0 = y1 = H - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= W - 1:
        x0 = x1 = W - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * f[:, y0, x0] + (1 - ly) * lx * f[:, y0, x1]
            + ly * (1 - lx) * f[:, y1, x0] + ly * lx * f[:, y1, x1])


def roi_align_loop(features, rois, out, scale, s, aligned):
    res = torch.zeros(len(rois), features.size(1), out, out, dtype=features.dtype)
    off = 0.5 if aligned else 0.0
    for k, (b, x0, y0, x1, y1) in enumerate(rois.tolist()):
        x0, y0, x1, y1 = x0 * scale - off, y0 * scale - off, x1 * scale - off, y1 * scale - off
        w, h = x1 - x0, y1 - y0
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        bw, bh = w / out, h / out
        for i in range(out):
            for j in range(out):
                acc = 0
                for iy in range(s):
                    for ix in range(s):
                        y = y0 + i * bh + (iy + 0.5) * bh / s
                        x = x0 + j * bw + (ix + 0.5) * bw / s
                        acc = acc + bilinear(features[int(b)], y, x)
                res[k, :, i, j] = acc / (s * s)
    return res


@pytest.mark.parametrize("aligned", [True, False])
def test_roi_align_equals_loop(aligned):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64)
    xy = torch.rand(7, 2, generator=g) * 40 - 4            # some boxes poke outside the 44×36 image
    wh = torch.rand(7, 2, generator=g) * 20 + 0.5
    rois = torch.cat([torch.randint(0, 2, (7, 1), generator=g).double(), xy, xy + wh], dim=1).double()
    for out, s in [(3, 2), (5, 1), (2, 3)]:
        ours = roi_align(feats, rois, out, spatial_scale=0.25, sampling_ratio=s, aligned=aligned)
        torch.testing.assert_close(ours, roi_align_loop(feats, rois, out, 0.25, s, aligned))


def test_roi_align_gradient_and_constant_map():
    feats = torch.full((1, 2, 8, 8), 3.0, requires_grad=True)
    rois = torch.tensor([[0, 4.0, 4.0, 20.0, 28.0]])
    out = roi_align(feats, rois, 4, spatial_scale=0.25)
    torch.testing.assert_close(out, torch.full((1, 2, 4, 4), 3.0))   # inside the map: the constant
    out.sum().backward()
    assert math.isclose(feats.grad.sum().item(), 2 * 16, rel_tol=1e-5)  # weights of each point sum to 1


def test_roi_align_errors():
    with pytest.raises(ValueError, match=r"rois \(K, 5\)"):
        roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(2, 4), 2)
    assert roi_align(torch.zeros(1, 2, 4, 4), torch.zeros(0, 5), 3).shape == (0, 2, 3, 3)
