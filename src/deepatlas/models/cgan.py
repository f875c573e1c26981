"""Class-conditional GAN (Mirza & Osindero 2014) with a projection discriminator (Miyato & Koyama 2018).

Conditioning turns the game of models/gan.py into  min_G max_D  E log D(x | y) + E log(1 − D(G(z | y) | y)).
Generator: the label's learned embedding concatenated to z (Mirza & Osindero §3.2), then DCGAN's
generator. Discriminator, projection form (Miyato & Koyama eq. 3): with features φ(x),
    D(x, y) = ψ(φ(x)) + ⟨e_y, φ(x)⟩,
an unconditional score plus the inner product of a class embedding with the features — the form
that follows when log p(y | x) is a softmax over a linear head (their §3), instead of concatenating
y to the input. Losses are models/gan.py's (BCE discriminator, non-saturating generator).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from deepatlas.models.gan import DCDiscriminator, DCGenerator, discriminator_loss, generator_loss


class ConditionalGenerator(nn.Module):
    """(z (B, z_dim), y (B,)) -> image (B, 1, 14, 14): DCGenerator on [z, e_y]."""

    def __init__(self, n_classes: int = 10, z_dim: int = 32, embed_dim: int = 16, width: int = 64):
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        self.embed = nn.Embedding(n_classes, embed_dim)
        self.net = DCGenerator(z_dim + embed_dim, width)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        return self.net(torch.cat([z, self.embed(y)], dim=1))


class ProjectionDiscriminator(nn.Module):
    """(x (B, 1, 14, 14), y (B,)) -> logit (B,) = ψ(φ(x)) + ⟨e_y, φ(x)⟩, φ = DCDiscriminator's conv trunk."""

    def __init__(self, n_classes: int = 10, width: int = 64):
        super().__init__()
        base = DCDiscriminator(width)
        self.phi, self.psi = base.net[:-1], base.net[-1]            # features (B, 16·width), linear head
        self.embed = nn.Embedding(n_classes, 16 * width)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        f = self.phi(x)                                             # (B, 16·width)
        return self.psi(f).squeeze(-1) + (self.embed(y) * f).sum(-1)


def train_cgan(gen: ConditionalGenerator, disc: ProjectionDiscriminator,
               sample_real: Callable[[int, torch.Generator], tuple[Tensor, Tensor]], steps: int, batch: int = 64,
               lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), seed: int = 0) -> list[tuple[float, float]]:
    """One D and one G Adam step per iteration; fakes get labels drawn uniformly. Returns (D, G) losses."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=betas)
    history = []
    for _ in range(steps):
        x, y = sample_real(batch, g)
        y_fake = torch.randint(0, gen.n_classes, (batch,), generator=g)
        z = torch.randn(batch, gen.z_dim, generator=g)
        with torch.no_grad():
            fake = gen(z, y_fake)
        d_loss = discriminator_loss(disc(x, y), disc(fake, y_fake))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = generator_loss(disc(gen(z, y_fake), y_fake))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        history.append((float(d_loss.detach()), float(g_loss.detach())))
    return history
