"""Grad-CAM, saliency, rollout and deletion on models built so the answer is known."""
import pytest
import torch
from torch import nn

from deepatlas.explain.deletion import area_under, deletion_curve, random_maps
from deepatlas.explain.gradcam import UnknownLayer, feature_layers, grad_cam
from deepatlas.explain.rollout import attention_rollout, rollout
from deepatlas.explain.saliency import saliency
from deepatlas.models.cnn import ResNet
from deepatlas.models.vit import ViT
from deepatlas.explain.synthetic import REGIONS, TwoEvidenceNet, peak_in_region, region_mask, two_evidence_image


def test_grad_cam_peaks_on_the_evidence_of_the_explained_class():
    net, x = TwoEvidenceNet(), two_evidence_image()
    for cls, (rows, cols) in REGIONS.items():
        cam, target = grad_cam(net, x, "blur", target=cls)
        r, c = divmod(int(cam[0].argmax()), 20)
        assert target.item() == cls and rows.start <= r < rows.stop and cols.start <= c < cols.stop, (cls, r, c)
        assert peak_in_region(cam[0], cls) and not peak_in_region(cam[0], 1 - cls)
        inside = region_mask(cls)
        assert cam[0][inside].mean() > 5 * cam[0][~inside].mean()   # the map is concentrated there


def test_grad_cam_at_a_gap_net_is_cam():
    # Zhou et al. 2016: with GAP + linear, α_k^c = w_k^c / Z, so Grad-CAM = ReLU(Σ_k w_k^c A^k), normalised
    torch.manual_seed(0)
    net = ResNet((1, 1), (4, 8)).eval()
    x = torch.randn(2, 1, 16, 16)
    cam, target = grad_cam(net, x, "stages.1", upsample=False)
    with torch.no_grad():
        A = net.features(x)[-1]
        w = net.head.weight[target]                                             # (B, K)
        want = torch.relu((w[:, :, None, None] * A).sum(1))
    want = (want - want.flatten(1).min(1).values[:, None, None])
    want = want / want.flatten(1).max(1).values[:, None, None]
    torch.testing.assert_close(cam, want, atol=1e-5, rtol=1e-5)


def test_unknown_layer_lists_the_valid_ones():
    net = ResNet((1, 1), (4, 8))
    layers = feature_layers(net, torch.randn(1, 1, 16, 16))
    assert "stages.1" in layers and "head" not in layers
    with pytest.raises(UnknownLayer, match="valid: .*stages.1"):
        grad_cam(net, torch.randn(1, 1, 16, 16), "head")


def test_saliency_is_zero_off_the_evidence_and_smoothgrad_stays_there():
    net, x = TwoEvidenceNet(), two_evidence_image()
    sal, _ = saliency(net, x, target=0)
    # only channel 0 matters for class 0; its gradient is 1/(9·400) wherever the blurred value is positive
    assert sal[0, 3:6, 4:7].min() > 0.5
    smooth, _ = saliency(net, x, target=0, smooth=8)
    assert smooth[0, 2:7, 3:8].mean() > smooth[0, 12:18, 8:18].mean()


def test_rollout_follows_attention_through_the_residual_stream():
    T = 5
    A1 = torch.eye(T).expand(1, 2, T, T).clone()
    A1[0, :, 0] = 0
    A1[0, :, 0, 3] = 1.0                                     # layer 1: the class token reads patch 3 only
    R = rollout([A1])
    torch.testing.assert_close(R[0, 0], torch.tensor([0.5, 0, 0, 0.5, 0]))
    R2 = rollout([A1, torch.eye(T).expand(1, 2, T, T)])      # an identity layer changes nothing
    torch.testing.assert_close(R2, R)
    vit = ViT(28, 7, dim=16, depth=2, heads=2, mlp_dim=32)
    maps = attention_rollout(vit, torch.randn(3, 1, 28, 28))
    assert maps.shape == (3, 28, 28) and maps.min() >= 0 and maps.max() <= 1
    with pytest.raises(ValueError, match="needs a ViT"):
        attention_rollout(ResNet((1,), (4,)), torch.randn(1, 1, 8, 8))


def test_deletion_of_the_evidence_beats_random_on_the_built_model():
    net, x = TwoEvidenceNet(), two_evidence_image().repeat(4, 1, 1, 1)
    target = torch.zeros(4, dtype=torch.long)
    cam, _ = grad_cam(net, x, "blur", target=0)
    curve = deletion_curve(net, x, cam, target, steps=10, background=0.0)
    rand = deletion_curve(net, x, random_maps(cam.shape), target, steps=10, background=0.0)
    assert curve.shape == (4, 11) and torch.allclose(curve[:, 0], rand[:, 0])   # nothing deleted: same start
    assert (area_under(curve) < area_under(rand)).all()
