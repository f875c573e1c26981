"""Variational autoencoder (Kingma & Welling 2014; β-VAE, Higgins et al. 2017).

Encoder q_φ(z | x) = N(μ_φ(x), diag σ²_φ(x)), prior p(z) = N(0, I), decoder p_θ(x | z) Bernoulli
per pixel (logits). The evidence lower bound, eq. (3) of Kingma & Welling:
    log p(x) ≥ ELBO = E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z))
and β-VAE's objective weights the KL: L = −E_q[log p_θ(x | z)] + β KL.
Reparameterisation (§2.4): z = μ + σ ⊙ ε, ε ~ N(0, I), so ∂z/∂μ = 1, ∂z/∂σ = ε and the
gradient passes through the sample.
Closed-form KL to N(0, I) (Appendix B):  KL = −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²).
Importance-weighted estimate of log p(x) (Burda et al. 2016, eq. 8), a tighter bound that tends
to log p(x) as K grows:  log p(x) ≈ log (1/K) Σ_k p_θ(x | z_k) p(z_k) / q_φ(z_k | x),  z_k ~ q.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.autoencoder import mlp

LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over the last dim: −½ Σ (1 + log σ² − μ² − σ²)   (B,)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def reparameterise(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = μ + σ ε with σ = exp(½ log σ²), ε ~ N(0, I)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + (0.5 * logvar).exp() * eps


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; μ, diag σ²) summed over the last dim."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


class VAE(nn.Module):
    """x (B, d) in [0, 1] -> (μ, log σ²) (B, k) each -> z -> Bernoulli logits (B, d)."""

    def __init__(self, d: int = 784, k: int = 16, hidden: tuple[int, ...] = (400,)):
        super().__init__()
        if k < 1:
            raise ValueError(f"latent size k={k}; valid: ≥ 1")
        self.k = k
        self.encoder = mlp([d, *hidden, 2 * k])
        self.decoder = mlp([k, *reversed(hidden), d])

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)                 # (B, k), (B, k)
        return mu, logvar

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)                                        # logits (B, d)

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """log p_θ(x | z) = Σ_pixels [x log p + (1 − x) log(1 − p)]   (B,)."""
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)

    def elbo_terms(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(reconstruction log-likelihood E_q log p(x|z) (one sample), KL(q ‖ p)) per example (B,)."""
        mu, logvar = self.encode(x)
        z = reparameterise(mu, logvar, generator)
        return self.log_likelihood(x, self.decode(z)), gaussian_kl(mu, logvar)

    def loss(self, x: Tensor, beta: float = 1.0) -> Tensor:
        """β-VAE loss, mean over the batch: −E_q log p(x|z) + β KL (β = 1: the negative ELBO)."""
        rec, kl = self.elbo_terms(x)
        return (-rec + beta * kl).mean()

    @torch.no_grad()
    def importance_log_likelihood(self, x: Tensor, K: int = 100, generator: torch.Generator | None = None) -> Tensor:
        """Burda et al.'s K-sample estimate of log p(x) (B,): ≥ the ELBO in expectation."""
        mu, logvar = self.encode(x)
        logs = []
        for _ in range(K):
            z = reparameterise(mu, logvar, generator)
            log_w = (self.log_likelihood(x, self.decode(z))
                     + gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))   # log p(z)
                     - gaussian_log_density(z, mu, logvar))                                # − log q(z|x)
            logs.append(log_w)
        return torch.logsumexp(torch.stack(logs), dim=0) - math.log(K)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images (n, d) in [0, 1]: the decoder's mean p(x | z) at z ~ N(0, I)."""
        return self.decode(torch.randn(n, self.k, generator=generator)).sigmoid()


def train_vae(model: VAE, x: Tensor, steps: int, beta: float = 1.0, batch: int = 128, lr: float = 1e-3,
              seed: int = 0, log: Callable[[int, float, float], None] | None = None, log_every: int = 100) -> None:
    """Adam on the β-VAE loss; log(step, rec, kl) every log_every steps (the ELBO terms over training)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        xb = x[torch.randint(0, len(x), (batch,), generator=g)]
        rec, kl = model.elbo_terms(xb)
        loss = (-rec + beta * kl).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log is not None and (step % log_every == 0 or step == steps - 1):
            log(step, float(-rec.detach().mean()), float(kl.detach().mean()))
