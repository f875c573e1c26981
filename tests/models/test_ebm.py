"""EBM pieces: Langevin samples a known 2-D mixture, the mixture's density, replay buffer, CD loss."""
from __future__ import annotations

import math

import pytest
import torch

from deepatlas.models.ebm import (GaussianMixtureEnergy, MLPEnergy, ReplayBuffer, contrastive_divergence_loss,
                                  histogram_tv, langevin, two_d_noise)


def _mixture() -> GaussianMixtureEnergy:
    return GaussianMixtureEnergy(torch.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 1.5]]), torch.tensor([0.5, 0.5, 0.6]),
                                 torch.tensor([0.5, 0.3, 0.2]))


def test_mixture_density_is_normalised_and_matches_torch_distributions():
    mix = _mixture()
    x = torch.randn(50, 2)
    comps = torch.distributions.Independent(torch.distributions.Normal(mix.means, mix.stds[:, None].expand(3, 2)), 1)
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(mix.weights), comps)
    torch.testing.assert_close(mix.log_density(x), ref.log_prob(x))
    g = torch.linspace(-6, 6, 241)
    gx, gy = torch.meshgrid(g, g, indexing="ij")
    mass = mix.log_density(torch.stack([gx.flatten(), gy.flatten()], 1)).exp().sum() * (g[1] - g[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=1e-3)


def test_langevin_samples_the_known_mixture():
    mix = _mixture()
    g = torch.Generator().manual_seed(0)
    start = 2 * torch.randn(3000, 2, generator=g)
    x = langevin(mix, start, 600, 0.03, generator=g)
    exact = mix.sample(3000, g)
    tv, tv_exact, tv_start = (histogram_tv(s, mix.log_density, -4, 4, 20) for s in (x, exact, start))
    assert tv < tv_exact + 0.03 and tv_start > 0.4
    mean, cov = mix.mean_cov()
    torch.testing.assert_close(x.mean(0), mean, atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.15, rtol=0)
    near = torch.cdist(x, mix.means).argmin(1)
    torch.testing.assert_close(torch.bincount(near, minlength=3).float() / len(x), torch.tensor([0.5, 0.3, 0.2]),
                               atol=0.05, rtol=0)


def test_langevin_on_a_gaussian_follows_the_ula_update():
    """E = ½‖x‖²: one step is x(1 − ε) + √(2ε) ξ; with ξ drawn from the same generator state."""
    x = torch.randn(4, 2)
    eps = 0.1
    out = langevin(lambda v: 0.5 * v.pow(2).sum(1), x, 1, eps, generator=torch.Generator().manual_seed(3))
    xi = torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, x * (1 - eps) + math.sqrt(2 * eps) * xi)


def test_replay_buffer_reinitialises_a_share_and_stores_pushes():
    buf = ReplayBuffer(two_d_noise(), size=100, reinit_prob=0.0, generator=torch.Generator().manual_seed(0))
    buf.data.fill_(7.0)
    x, idx = buf.sample(10)
    assert (x == 7.0).all()
    buf.push(torch.zeros(10, 2), idx)
    assert (buf.data[idx] == 0).all()
    buf.reinit_prob = 1.0
    x, _ = buf.sample(10)
    assert (x.abs() <= 3).all() and not (x == 7.0).any()
    with pytest.raises(ValueError, match="reinit_prob"):
        ReplayBuffer(two_d_noise(), reinit_prob=1.5)


def test_cd_loss_gradient_lowers_data_energy_and_raises_sample_energy():
    e = MLPEnergy(2, 16, 2)
    pos, neg = torch.randn(8, 2), torch.randn(8, 2) + 3
    loss = contrastive_divergence_loss(e(pos), e(neg), alpha=0.0)
    loss.backward()
    with torch.no_grad():
        for p in e.parameters():
            p -= 1e-3 * p.grad
    after = float(e(pos).mean() - e(neg).mean())
    before = float(loss)
    assert after < before
