"""VAE: closed-form KL = torch.distributions' and a Monte-Carlo estimate; reparameterised gradients;
ELBO ≤ the importance-weighted log-likelihood; log densities equal torch's."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from deepatlas.data.digits import load_digits_tensors
from deepatlas.models.vae import VAE, gaussian_kl, gaussian_log_density, reparameterise, train_vae


def test_closed_form_kl_equals_torch_distributions_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    sd = (0.5 * logvar).exp()
    want = kl_divergence(Normal(mu, sd), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), want)
    # Monte Carlo: E_q[log q(z) − log p(z)] with 200k samples per row
    z = mu + sd * torch.randn(200_000, 6, 5, generator=g)
    mc = (Normal(mu, sd).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1)
    se = mc.std(0) / 200_000 ** 0.5
    assert ((mc.mean(0) - want).abs() < 4 * se + 1e-3).all()


def test_log_density_equals_torch():
    g = torch.Generator().manual_seed(1)
    z, mu, logvar = (torch.randn(4, 3, generator=g) for _ in range(3))
    want = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), want)


def test_reparameterised_gradient_is_analytic():
    """d/dμ E[z²] = 2μ and d/d(log σ²) E[z²] = σ² for z = μ + σε (pathwise gradient, many samples)."""
    mu = torch.full((200_000, 1), 0.7, requires_grad=True)
    logvar = torch.full((200_000, 1), -0.4, requires_grad=True)
    z = reparameterise(mu, logvar, torch.Generator().manual_seed(2))
    z.pow(2).mean().backward()
    assert abs(mu.grad.sum().item() - 1.4) < 0.01
    assert abs(logvar.grad.sum().item() - torch.tensor(-0.4).exp().item()) < 0.01


def test_elbo_is_below_importance_weighted_log_likelihood():
    torch.set_num_threads(1)
    x, _, xt, _ = load_digits_tensors()
    vae = VAE(64, 4, hidden=(64,))
    train_vae(vae, x, steps=400, lr=3e-3)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        elbos = torch.stack([sum(vae.elbo_terms(xt[:100], g)[i] * s for i, s in ((0, 1), (1, -1)))
                             for _ in range(200)]).mean(0)                       # E_q ELBO per image
    # the K-sample bound holds in expectation: average a few independent estimates
    iw = torch.stack([vae.importance_log_likelihood(xt[:100], K=200, generator=g) for _ in range(5)]).mean(0)
    assert (elbos <= iw + 1e-3).float().mean() >= 0.9        # per image, up to Monte-Carlo noise
    assert (iw - elbos).mean() > 0                           # the bound is not tight for a finite model


def test_bad_latent_size():
    with pytest.raises(ValueError, match="valid: ≥ 1"):
        VAE(10, 0)
