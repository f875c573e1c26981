"""RealNVP: coupling log-dets = autograd's full-Jacobian log-det, exact inverse, squeeze, masks, bits/dim."""
from __future__ import annotations

import math

import pytest
import torch

from deepatlas.models.flow import (AffineCoupling, RealNVP, bits_per_dim, channel_mask, checkerboard_mask, dequantise,
                                   logit_transform, squeeze, unsqueeze)


def _random_flow(shape=(1, 4, 4), n_scales=2) -> RealNVP:
    torch.manual_seed(0)
    flow = RealNVP(shape, n_scales=n_scales, coupling=2, hidden=8).double()
    with torch.no_grad():                       # zero-initialised outputs would make every log-det 0
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


@pytest.mark.parametrize("shape,n_scales", [((1, 4, 4), 2), ((2, 4, 4), 3), ((1, 2, 2), 1)])
def test_logdet_equals_autograd_full_jacobian(shape, n_scales):
    flow = _random_flow(shape, n_scales)
    x = torch.rand(3, *shape, dtype=torch.float64) * 0.9 + 0.05
    z, logdet = flow(x)
    assert z.shape == (3, math.prod(shape))
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v.reshape(1, *shape))[0].reshape(-1), x[i].reshape(-1))
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign != 0
        assert abs(float(logdet[i] - logabs)) < 1e-9
    assert abs(float(logdet.std())) > 1e-3      # the log-det depends on x: the test is not vacuous


def test_inverse_is_exact():
    flow = _random_flow()
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64) * 0.9 + 0.05
    z, _ = flow(x)
    torch.testing.assert_close(flow.inverse(z), x, atol=1e-10, rtol=0)
    z2 = z + 0.01 * torch.randn_like(z)          # nearby latents map back into (0, 1) and forward again
    torch.testing.assert_close(flow(flow.inverse(z2))[0], z2, atol=1e-8, rtol=0)


def test_density_integrates_to_at_most_one_on_the_unit_box():
    """∫_[0,1]^D p(x) dx = E_{u ~ U[0,1]^D} p(u) (Monte Carlo): ≤ 1 (mass can fall outside the box), and
    most of it inside for these weights — a log-det with the wrong sign or scale fails this."""
    flow = _random_flow((1, 2, 2), n_scales=1)
    u = torch.rand(200_000, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p = flow.log_prob(u).exp()
    est, se = float(p.mean()), float(p.std() / len(p) ** 0.5)
    assert 0.5 < est < 1 + 4 * se, (est, se)


def test_coupling_keeps_masked_pixels_and_triangular_logdet():
    torch.manual_seed(1)
    for mask, c in ((checkerboard_mask(4, 4, 0), 2), (channel_mask(4, 1), 4)):
        layer = AffineCoupling(c, mask, hidden=8)
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(0.5 * torch.randn_like(p))
        x = torch.randn(2, c, 4, 4)
        y, ld = layer(x)
        keep = mask.expand_as(x).bool()
        torch.testing.assert_close(y[keep], x[keep])          # b ⊙ y = b ⊙ x
        torch.testing.assert_close(layer.inverse(y), x, atol=1e-5, rtol=0)
        s, _ = layer._st(x * mask)
        torch.testing.assert_close(ld, s.flatten(1).sum(1))


def test_masks_squeeze_and_logit():
    assert checkerboard_mask(2, 2, 0)[0, 0].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert channel_mask(4, 0).flatten().tolist() == [1, 1, 0, 0] and channel_mask(4, 1).flatten().tolist() == [0, 0, 1, 1]
    x = torch.arange(32.0).reshape(1, 2, 4, 4)
    s = squeeze(x)
    assert s.shape == (1, 8, 2, 2) and s[0, :4, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]   # one 2×2 block
    torch.testing.assert_close(unsqueeze(s), x)
    with pytest.raises(ValueError, match="even"):
        squeeze(torch.zeros(1, 1, 3, 4))
    x = torch.rand(4, 1, 2, 2, dtype=torch.float64)
    y, ld = logit_transform(x)
    grad = torch.autograd.functional.jacobian(lambda v: logit_transform(v)[0].sum(), x)     # elementwise dy/dx
    torch.testing.assert_close(ld, grad.log().flatten(1).sum(1))


def test_bits_per_dim_of_uniform_density_is_log2_levels():
    """p(x) = 1 on [0, 1)^D (log p = 0) spreads mass evenly over L levels: exactly log₂ L bits per dim."""
    assert float(bits_per_dim(torch.zeros(1), 64, 17)) == pytest.approx(math.log2(17))
    k = torch.randint(0, 17, (100, 1, 8, 8)).float()
    x = dequantise(k, 17)
    assert ((x * 17).floor() == k).all() and x.min() >= 0 and x.max() < 1


def test_bad_shape_raises():
    with pytest.raises(ValueError, match="squeezed"):
        RealNVP((1, 6, 6), n_scales=3)
