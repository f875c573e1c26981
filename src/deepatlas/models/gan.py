"""Generative adversarial networks: the losses, DCGAN, WGAN-GP, and the 8-Gaussian ring.

Goodfellow et al. 2014, eq. (1):  min_G max_D  E_x log D(x) + E_z log(1 − D(G(z)))
With D = σ(l) (l the discriminator's logit):
    D's loss          −log σ(l_real) − log(1 − σ(l_fake)) = softplus(−l_real) + softplus(l_fake)
    G, minimax        log(1 − σ(l_fake)) = −softplus(l_fake)        ∂/∂l = −σ(l)       -> 0 when D is sure (σ(l) -> 0)
    G, non-saturating −log σ(l_fake)     =  softplus(−l_fake)        ∂/∂l = −(1 − σ(l)) -> −1 (§3: "much stronger
                                                                       gradients early in learning")
WGAN-GP (Gulrajani et al. 2017, eq. 3): critic loss  E D(x̃) − E D(x) + λ E (‖∇_x̂ D(x̂)‖₂ − 1)²,
x̂ = ε x + (1 − ε) x̃, ε ~ U[0, 1]; generator loss −E D(x̃).
DCGAN (Radford et al. 2016): strided (transposed) convolutions, batch norm in G, LeakyReLU in D.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

G_LOSSES = ("minimax", "non_saturating", "wasserstein")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """−E log D(x) − E log(1 − D(G(z))), with D = σ(logit)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: Tensor, kind: str = "non_saturating") -> Tensor:
    """minimax: E log(1 − D(G(z))); non_saturating: −E log D(G(z)); wasserstein: −E D(G(z))."""
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    if kind == "wasserstein":
        return -fake_logits.mean()
    raise ValueError(f"generator loss {kind!r}; valid: {', '.join(G_LOSSES)}")


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """E (‖∇_x̂ D(x̂)‖₂ − 1)² at x̂ = ε x + (1 − ε) x̃, one ε ~ U[0, 1] per sample (Gulrajani et al. eq. 3)."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).detach().requires_grad_(True)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]   # (B, ...)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


class MLPGenerator(nn.Module):
    """z (B, z_dim) -> x (B, out)."""

    def __init__(self, z_dim: int = 2, out: int = 2, width: int = 128, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        d = z_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, out))
        self.z_dim = z_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def minibatch_std(h: Tensor) -> Tensor:
    """(B, F) -> (B, F + 1): append the batch's mean feature standard deviation to every row
    (Karras et al. 2018 §3, the simplified minibatch discrimination of Salimans et al. 2016 §3.2):
    a collapsed batch has a small spread, which the discriminator can then see and punish."""
    spread = h.std(dim=0, unbiased=False).mean()                                # scalar
    return torch.cat([h, spread.expand(h.shape[0], 1)], dim=1)


class MLPDiscriminator(nn.Module):
    """x (B, d) -> logit (B,); minibatch_std=True appends the batch spread after the first layer."""

    def __init__(self, d: int = 2, width: int = 128, depth: int = 3, minibatch_std: bool = False):
        super().__init__()
        self.minibatch_std = minibatch_std
        self.first = nn.Sequential(nn.Linear(d, width), nn.LeakyReLU(0.2))
        layers: list[nn.Module] = []
        for i in range(1, depth):
            layers += [nn.Linear(width + (minibatch_std and i == 1), width), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Linear(width + (minibatch_std and depth == 1), 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.first(x)                                                          # (B, width)
        if self.minibatch_std:
            h = minibatch_std(h)                                                   # (B, width + 1)
        return self.net(h).squeeze(-1)


class DCGenerator(nn.Module):
    """z (B, z_dim) -> image (B, 1, 14, 14) in [-1, 1]: project to 7×7, one ×2 transposed conv."""

    def __init__(self, z_dim: int = 32, width: int = 64):
        super().__init__()
        self.z_dim, self.width = z_dim, width
        self.project = nn.Sequential(nn.Linear(z_dim, width * 7 * 7), nn.BatchNorm1d(width * 7 * 7), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1),   # 7 -> 14
                                nn.BatchNorm2d(width // 2), nn.ReLU(),
                                nn.Conv2d(width // 2, 1, 3, padding=1), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.up(self.project(z).view(-1, self.width, 7, 7))


class DCDiscriminator(nn.Module):
    """image (B, 1, 14, 14) -> logit (B,): strided convs, LeakyReLU(0.2), no batch norm (WGAN-GP safe)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, width // 2, 4, stride=2, padding=1), nn.LeakyReLU(0.2),   # 7×7
                                 nn.Conv2d(width // 2, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),  # 4×4
                                 nn.Flatten(), nn.Linear(width * 16, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


def ring_of_gaussians(n: int, modes: int = 8, radius: float = 2.0, std: float = 0.02,
                      generator: torch.Generator | None = None) -> Tensor:
    """n points (n, 2) from `modes` Gaussians of std `std` evenly spaced on a circle (Metz et al. 2017)."""
    k = torch.randint(0, modes, (n,), generator=generator)
    angle = 2 * math.pi * k.float() / modes
    centres = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centres + std * torch.randn(n, 2, generator=generator)


def ring_modes_covered(x: Tensor, modes: int = 8, radius: float = 2.0, std: float = 0.02,
                       min_fraction: float = 0.01) -> tuple[int, float]:
    """(modes holding ≥ min_fraction of the samples, fraction of "high-quality" samples): a sample
    is high quality within max(3σ, 0.1·radius) of a centre (VEEGAN, Srivastava et al. 2017 §5.1)."""
    angles = 2 * math.pi * torch.arange(modes).float() / modes
    centres = radius * torch.stack([angles.cos(), angles.sin()], dim=1)          # (M, 2)
    d = torch.cdist(x, centres)                                                  # (N, M)
    near, which = d.min(dim=1)
    good = near < max(3 * std, 0.1 * radius)
    counts = torch.bincount(which[good], minlength=modes)
    return int((counts >= min_fraction * len(x)).sum()), float(good.float().mean())


def train_gan(gen: nn.Module, disc: nn.Module, sample_real, steps: int, loss: str = "non_saturating",
              batch: int = 128, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), n_critic: int = 1,
              gp_weight: float = 0.0, seed: int = 0, on_step=None) -> list[tuple[float, float]]:
    """Alternate n_critic discriminator/critic updates and one generator update, `steps` times.

    loss 'wasserstein' trains a critic with E D(fake) − E D(real) (+ gp_weight · penalty); otherwise
    D minimises the BCE of eq. (1) and G the `loss` named. sample_real(n, generator) -> real batch.
    on_step(step) is called after each generator update (e.g. to measure FID). Returns (D, G) losses."""
    if loss not in G_LOSSES:
        raise ValueError(f"generator loss {loss!r}; valid: {', '.join(G_LOSSES)}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=betas)
    history = []
    for step in range(steps):
        for _ in range(n_critic):
            real = sample_real(batch, g)
            with torch.no_grad():
                fake = gen(torch.randn(batch, gen.z_dim, generator=g))
            if loss == "wasserstein":
                d_loss = disc(fake).mean() - disc(real).mean()
                if gp_weight:
                    d_loss = d_loss + gp_weight * gradient_penalty(disc, real, fake, g)
            else:
                d_loss = discriminator_loss(disc(real), disc(fake))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
        g_loss = generator_loss(disc(gen(torch.randn(batch, gen.z_dim, generator=g))), loss)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        history.append((d_loss.item(), g_loss.item()))
        if on_step is not None:
            on_step(step)
    return history
