"""GAN losses and their gradients in closed form; the gradient penalty on a critic with a known gradient."""
from __future__ import annotations

import pytest
import torch

from deepatlas.models.gan import (DCDiscriminator, DCGenerator, discriminator_loss, generator_loss, gradient_penalty,
                                  ring_modes_covered, ring_of_gaussians)


def _grad(kind, logit):
    l = torch.tensor([logit], requires_grad=True)
    generator_loss(l, kind).backward()
    return l.grad.item()


def test_generator_gradients_minimax_saturates_non_saturating_does_not():
    for logit in (-8.0, -2.0, 0.0, 3.0):
        s = torch.sigmoid(torch.tensor(logit)).item()
        assert _grad("minimax", logit) == pytest.approx(-s, abs=1e-6)            # ∂/∂l log(1 − σ(l)) = −σ(l)
        assert _grad("non_saturating", logit) == pytest.approx(-(1 - s), abs=1e-6)  # ∂/∂l −log σ(l) = −(1 − σ(l))
    # D confident the fake is fake (σ(l) ≈ 3e-4): minimax gives G almost nothing, NS almost 1
    assert abs(_grad("minimax", -8.0)) < 1e-3 and abs(_grad("non_saturating", -8.0)) > 0.99
    assert _grad("wasserstein", 5.0) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="valid: minimax"):
        generator_loss(torch.zeros(1), "hinge")


def test_discriminator_loss_is_bce():
    real, fake = torch.randn(7), torch.randn(7)
    want = torch.nn.functional.binary_cross_entropy_with_logits(real, torch.ones(7)) + \
        torch.nn.functional.binary_cross_entropy_with_logits(fake, torch.zeros(7))
    torch.testing.assert_close(discriminator_loss(real, fake), want)


def test_gradient_penalty_of_linear_critic_is_closed_form():
    """D(x) = wᵀx has ∇D = w everywhere, so the penalty is (‖w‖ − 1)² whatever x̂ is."""
    w = torch.tensor([3.0, -4.0])                       # ‖w‖ = 5
    critic = lambda x: x @ w
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(16.0)
    # and for D(x) = ‖x‖² (∇ = 2x̂), against an explicit x̂ with the same ε
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    got = gradient_penalty(lambda x: x.pow(2).sum(-1), real, fake, g1)
    eps = torch.rand((16, 1), generator=g2)
    x_hat = eps * real + (1 - eps) * fake
    assert got.item() == pytest.approx(((2 * x_hat).norm(dim=1) - 1).pow(2).mean().item(), rel=1e-5)


def test_dcgan_shapes_and_ring_mode_counter():
    g, d = DCGenerator(16), DCDiscriminator()
    x = g(torch.randn(5, 16))
    assert x.shape == (5, 1, 14, 14) and x.abs().max() <= 1 and d(x).shape == (5,)
    ring = ring_of_gaussians(4000, generator=torch.Generator().manual_seed(0))
    assert ring_modes_covered(ring) == (8, 1.0)
    one_mode = ring[(ring[:, 0] > 1.5)]                  # only the mode at angle 0
    assert ring_modes_covered(one_mode)[0] == 1


def test_minibatch_std_sees_a_collapsed_batch():
    from deepatlas.models.gan import MLPDiscriminator, minibatch_std
    h = torch.randn(8, 5)
    out = minibatch_std(h)
    assert out.shape == (8, 6) and torch.allclose(out[:, :5], h)
    assert out[0, 5].item() == pytest.approx(h.std(0, unbiased=False).mean().item())
    collapsed = minibatch_std(torch.ones(8, 5))
    assert (collapsed[:, 5] == 0).all()
    assert MLPDiscriminator(2, 16, minibatch_std=True)(torch.randn(4, 2)).shape == (4,)
