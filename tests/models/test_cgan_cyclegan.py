"""Conditional GAN (projection discriminator) and CycleGAN losses."""
from __future__ import annotations

import torch

from deepatlas.models.cgan import ConditionalGenerator, ProjectionDiscriminator
from deepatlas.models.cyclegan import CycleGAN, lsgan_d_loss, lsgan_g_loss


def test_projection_discriminator_is_unconditional_score_plus_inner_product():
    torch.manual_seed(0)
    d = ProjectionDiscriminator(10, 16)
    x, y = torch.randn(5, 1, 14, 14), torch.tensor([0, 3, 3, 9, 1])
    f = d.phi(x)
    torch.testing.assert_close(d(x, y), d.psi(f).squeeze(-1) + (d.embed.weight[y] * f).sum(-1))
    # the label changes the score only through ⟨e_y, φ(x)⟩
    diff = d(x, torch.full((5,), 2)) - d(x, torch.full((5,), 7))
    torch.testing.assert_close(diff, f @ (d.embed.weight[2] - d.embed.weight[7]))


def test_conditional_generator_depends_on_the_label():
    torch.manual_seed(0)
    g = ConditionalGenerator(10, 8, 4, 16).eval()
    z = torch.randn(3, 8)
    a, b = g(z, torch.zeros(3, dtype=torch.long)), g(z, torch.ones(3, dtype=torch.long))
    assert a.shape == (3, 1, 14, 14) and float((a - b).abs().max()) > 1e-4


def test_lsgan_losses_and_cycle_loss_vanishes_for_inverse_generators():
    assert float(lsgan_d_loss(torch.ones(4), torch.zeros(4))) == 0.0
    assert float(lsgan_g_loss(torch.ones(4))) == 0.0 and float(lsgan_g_loss(torch.zeros(4))) == 1.0
    torch.manual_seed(0)
    m = CycleGAN((8, 16))
    m.G = m.F = torch.nn.Identity()                     # G = F = identity: cycle and identity losses 0
    a, b = torch.rand(2, 1, 14, 14), torch.rand(2, 1, 14, 14)
    _, parts, fake_b, _ = m.generator_losses(a, b)
    assert parts["cycle"] == 0.0 and parts["identity"] == 0.0
    torch.testing.assert_close(fake_b, a)
    m2 = CycleGAN((8, 16))
    _, parts2, _, _ = m2.generator_losses(a, b)
    assert parts2["cycle"] > 0 and parts2["adv"] > 0
