"""The variational information bottleneck (Alemi, Fischer, Dillon & Murphy 2017) — map place F8.

The information bottleneck (Tishby, Pereira & Bialek 1999) asks for a representation Z of X that keeps
what predicts Y and forgets the rest: max I(Z; Y) − β I(Z; X). VIB bounds both terms (eq. 6 of Alemi et
al.) and trains a stochastic encoder p(z|x) = N(μ(x), diag σ²(x)) with a decoder q(y|z):
    J = E_x E_{z ~ p(z|x)} [−log q(y | z)]  +  β E_x KL(p(z|x) ‖ r(z)),   r(z) = N(0, I),
the KL (in nats, "the rate") an upper bound on I(Z; X), the cross-entropy a bound on H(Y) − I(Z; Y).
    KL(N(μ, σ²) ‖ N(0, 1)) = ½ Σ_k (μ_k² + σ_k² − 1 − log σ_k²)
z = μ + σ ⊙ ε (the reparameterisation trick, Kingma & Welling 2014) so the gradient flows into μ, σ.
Larger β squeezes the rate: accuracy is traded for compression (experiments/f8_bottleneck.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.foundations.mlp import MLP


def gaussian_kl_to_standard(mu: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(μ, diag e^{log σ²}) ‖ N(0, I)) per example: (B, K) -> (B,) nats."""
    # ½ Σ_k (μ² + σ² − 1 − log σ²)
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)


class VIB(nn.Module):
    """Encoder MLP -> (μ, log σ²) of a K-dim Gaussian z; a linear softmax decoder q(y|z)."""

    def __init__(self, n_in: int, n_classes: int, k: int = 32, hidden: int = 256) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"bottleneck size k={k} must be ≥ 1")
        self.k = k
        self.encoder = MLP([n_in, hidden, hidden, 2 * k], activation="relu")
        self.decoder = nn.Linear(k, n_classes)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:                  # (B, n_in) -> (B, K), (B, K)
        mu, s = self.encoder(x).chunk(2, dim=-1)
        # σ = softplus(s − 5) as in Alemi et al. §4.1: starts small, stays positive
        return mu, 2.0 * torch.log(F.softplus(s - 5.0) + 1e-8)

    def loss(self, x: Tensor, y: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor]:
        """(J, mean cross-entropy, mean KL rate) for one sample of z per example."""
        mu, log_var = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()                  # z = μ + σ ε
        ce = F.cross_entropy(self.decoder(z), y)
        kl = gaussian_kl_to_standard(mu, log_var).mean()
        return ce + beta * kl, ce, kl                                          # J = CE + β KL

    @torch.no_grad()
    def predict_proba(self, x: Tensor, samples: int = 12) -> Tensor:
        """q(y|x) ≈ (1/L) Σ_l softmax(decoder(z_l)), z_l ~ p(z|x) (L = 12 in the paper)."""
        mu, log_var = self.encode(x)
        std = (0.5 * log_var).exp()
        return torch.stack([self.decoder(mu + torch.randn_like(mu) * std).softmax(-1)
                            for _ in range(samples)]).mean(0)
