"""Distances between a set of generated samples and real ones, on feature vectors (N, d).

FID (Heusel et al. 2017, eq. 6): the Fréchet (2-Wasserstein) distance of two Gaussians fitted
to the features,
    d²((μ₁, Σ₁), (μ₂, Σ₂)) = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}).
KID (Bińkowski et al. 2018, eq. 4): the unbiased squared MMD with the cubic kernel
    k(x, y) = (xᵀy / d + 1)³  — unbiased, so usable with a few hundred samples where FID is not.
Inception Score (Salimans et al. 2016 §4): exp E_x KL(p(y|x) ‖ p(y)), here with our classifier.
Precision / recall (Kynkäänniemi et al. 2019, eq. 1–2): the fraction of generated samples inside
the real data's k-NN manifold (fidelity), and of real samples inside the generated manifold
(coverage). A sample is inside when it lies within the k-th-neighbour radius of some point.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _as64(x: Tensor | np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).double()


def sqrtm_psd(a: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix: V diag(√λ) Vᵀ (λ clipped at 0)."""
    lam, vecs = torch.linalg.eigh(a)
    return (vecs * lam.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}) in float64.

    Σ₁Σ₂ is not symmetric, but it is similar to the PSD matrix Σ₁^{1/2} Σ₂ Σ₁^{1/2}, so
    tr((Σ₁Σ₂)^{1/2}) = tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}) — two symmetric eigendecompositions
    instead of scipy's general Schur-based sqrtm (equal: tests/metrics/test_fid.py)."""
    mu1, mu2, sigma1, sigma2 = map(_as64, (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(),) * 2:
        raise ValueError(f"means {tuple(mu1.shape)}, {tuple(mu2.shape)} and covariances {tuple(sigma1.shape)}, "
                         f"{tuple(sigma2.shape)} must be (d,) and (d, d) with the same d")
    root1 = sqrtm_psd(sigma1)
    cross = sqrtm_psd(root1 @ sigma2 @ root1)                       # ~ (Σ₁Σ₂)^{1/2}
    d2 = (mu1 - mu2).pow(2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * torch.trace(cross)
    return max(float(d2), 0.0)


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """(μ (d,), Σ (d, d)) of features (N, d), Σ with the unbiased 1/(N − 1)."""
    f = _as64(features)
    if f.dim() != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N ≥ 2, d), got {tuple(f.shape)}")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def fid(features_a: Tensor, features_b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, d) and (M, d)."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def kid(features_a: Tensor, features_b: Tensor) -> float:
    """Unbiased MMD² with k(x, y) = (xᵀy/d + 1)³ (Bińkowski et al. 2018)."""
    x, y = _as64(features_a), _as64(features_b)
    d, m, n = x.shape[1], x.shape[0], y.shape[0]
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    # the diagonal k(x_i, x_i) is left out of the within-set means: that is what makes it unbiased
    return float((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1))
                 - 2 * kxy.mean())


def inception_score(probs: Tensor, eps: float = 1e-12) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))) of class probabilities (N, K): 1 (useless) to K (sharp and varied)."""
    p = _as64(probs)
    marginal = p.mean(0, keepdim=True)                                              # p(y)
    kl = (p * ((p + eps).log() - (marginal + eps).log())).sum(1)                    # (N,)
    return float(kl.mean().exp())


def _knn_radius(f: Tensor, k: int) -> Tensor:
    """Distance of each point to its k-th nearest other point (N,)."""
    dist = torch.cdist(f, f)
    return dist.kthvalue(k + 1, dim=1).values        # +1: the point itself is at distance 0


def precision_recall(real: Tensor, fake: Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of Kynkäänniemi et al. 2019 with k-NN manifolds."""
    real, fake = _as64(real), _as64(fake)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    r_real, r_fake = _knn_radius(real, k), _knn_radius(fake, k)
    d = torch.cdist(fake, real)                                                     # (N_fake, N_real)
    precision = (d <= r_real[None, :]).any(1).double().mean()      # fake inside the real manifold
    recall = (d.T <= r_fake[None, :]).any(1).double().mean()        # real inside the fake manifold
    return float(precision), float(recall)
