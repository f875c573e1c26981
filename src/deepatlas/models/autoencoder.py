"""Autoencoders (Hinton & Salakhutdinov 2006) and denoising autoencoders (Vincent et al. 2008).

    z = f_θ(x) ∈ R^k (the bottleneck, k ≪ d),   x̂ = g_φ(z),   L = ‖x − x̂‖² / d
A denoising autoencoder reads a corrupted x̃ ~ q(x̃ | x) and is scored against the clean x:
    L = ‖x − g_φ(f_θ(x̃))‖² / d     (Vincent et al. 2008, §2.3),  here x̃ = clip(x + σ ε, 0, 1).
With linear maps and squared error the optimum spans the top-k principal subspace (Baldi &
Hornik 1989), so PCA's reconstruction error is the exact yardstick for a linear autoencoder
(pca_reconstruction below; tests/models/test_autoencoder.py trains one to it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU, last: nn.Module | None = None) -> nn.Sequential:
    """Linear layers between consecutive sizes, `activation` between them, `last` after the final one."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    if last is not None:
        layers.append(last)
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """x (B, d) in [0, 1] -> z (B, k) -> x̂ (B, d) in [0, 1]; hidden=() and linear=True is PCA's model."""

    def __init__(self, d: int = 784, k: int = 16, hidden: tuple[int, ...] = (256,), linear: bool = False):
        super().__init__()
        if k < 1 or k > d:
            raise ValueError(f"bottleneck k={k}; valid: 1..{d} (the input size)")
        self.k = k
        self.encoder = mlp([d, *hidden, k])
        self.decoder = mlp([k, *reversed(hidden), d], last=None if linear else nn.Sigmoid())

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)                                        # (B, k)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)                                        # (B, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


def corrupt(x: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """x̃ = clip(x + σ ε, 0, 1), ε ~ N(0, I): the corruption q(x̃ | x) of the denoising autoencoder."""
    if sigma < 0:
        raise ValueError(f"noise level sigma={sigma}; valid: ≥ 0")
    return (x + sigma * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def reconstruction_error(model: Autoencoder, x: Tensor, target: Tensor | None = None) -> float:
    """Mean squared error per pixel of model(x) against target (default x)."""
    with torch.no_grad():
        return float(F.mse_loss(model(x), x if target is None else target))


def train_autoencoder(model: Autoencoder, x: Tensor, steps: int, batch: int = 128, lr: float = 2e-3,
                      noise: float = 0.0, seed: int = 0) -> list[float]:
    """Adam on ‖x − model(x̃)‖² (x̃ = x when noise = 0), lr decayed linearly to 0; returns the losses."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        xb = x[torch.randint(0, len(x), (batch,), generator=g)]
        inp = corrupt(xb, noise, g) if noise > 0 else xb
        loss = F.mse_loss(model(inp), xb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for group in opt.param_groups:
            group["lr"] = lr * (1 - (step + 1) / steps)
        losses.append(loss.item())
    return losses


def pca_basis(x_train: Tensor) -> tuple[Tensor, Tensor]:
    """(mean (1, d), principal directions (d', d) by decreasing variance) of x_train, in float64."""
    mean = x_train.double().mean(0, keepdim=True)
    _, _, vt = torch.linalg.svd(x_train.double() - mean, full_matrices=False)
    return mean, vt


def pca_reconstruction(x_train: Tensor | tuple[Tensor, Tensor], x: Tensor, k: int) -> Tensor:
    """Project x onto the top-k principal components of x_train (or a pca_basis) and back: the
    linear autoencoder's optimum."""
    mean, vt = x_train if isinstance(x_train, tuple) else pca_basis(x_train)
    basis = vt[:k]                                                    # (k, d)
    return ((x.double() - mean) @ basis.T @ basis + mean).float()
