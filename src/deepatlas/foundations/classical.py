"""Classical estimators before deep networks (map place F7), in torch from their closed forms.

Least squares (Gauss/Legendre): ŵ = argmin ‖Xw − y‖² solves the normal equations XᵀX ŵ = Xᵀy.
- `normal_equations`: Cholesky of XᵀX. Forming XᵀX squares the condition number, κ(XᵀX) = κ(X)²,
  so in precision u the relative error grows like u·κ(X)² (Golub & Van Loan 2013, §5.3.7).
- `qr_least_squares`: X = QR (Householder), ŵ = R⁻¹Qᵀy; backward stable, error ~ u·κ(X)
  (plus u·κ(X)²·‖r‖/‖y‖ for a large residual r).
- torch.linalg.lstsq is the library path the tests compare both with.

MAP with a Gaussian prior (the formula notes: "a Gaussian prior is weight decay"): with
y | w ~ N(Xw, σ²I) and w ~ N(0, τ²I),
    −log p(w | y) = ‖y − Xw‖² / 2σ² + ‖w‖² / 2τ² + const,
so the MAP estimate is ridge regression with λ = σ²/τ²:  ŵ = (XᵀX + λI)⁻¹Xᵀy (Hoerl & Kennard 1970),
the optimum of gradient descent on the L2-penalised loss.

Bayesian linear regression (Bishop 2006, eqs. 3.53–3.54, 3.58–3.59): posterior
N(m_N, S_N), S_N⁻¹ = S₀⁻¹ + XᵀX/σ², m_N = S_N Xᵀy/σ² (prior N(0, τ²I), S₀ = τ²I); predictive
N(m_Nᵀx, σ² + xᵀS_N x) — the noise plus the parameters' uncertainty.

Linear SVM (Cortes & Vapnik 1995) in the primal with the intercept as a last, regularised feature
(liblinear's `intercept_scaling`, so the objective is sklearn LinearSVC(loss="hinge")'s):
    min_w  ½‖w‖² + C Σ_i max(0, 1 − y_i wᵀx_i),  y_i ∈ {−1, +1},
by full-batch subgradient descent (Pegasos' step 1/(λt), λ = 1/(C n), Shalev-Shwartz et al. 2007),
one-vs-rest for many classes.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _check_xy(x: Tensor, y: Tensor) -> None:
    if x.dim() != 2 or y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"least squares wants X (n, d) and y (n,), got {tuple(x.shape)} and {tuple(y.shape)}")


def add_intercept(x: Tensor) -> Tensor:
    """(n, d) -> (n, d + 1) with a last column of ones (the bias as a weight)."""
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], dim=1)


def condition_number(x: Tensor) -> float:
    """κ₂(X) = σ_max / σ_min from the singular values."""
    s = torch.linalg.svdvals(x.double())
    return float(s[0] / s[-1])


def normal_equations(x: Tensor, y: Tensor, ridge: float = 0.0) -> Tensor:
    """ŵ = (XᵀX + λI)⁻¹ Xᵀy by a Cholesky factorisation, in x's dtype. x (n, d), y (n,) -> (d,)."""
    _check_xy(x, y)
    if ridge < 0:
        raise ValueError(f"ridge λ={ridge} must be ≥ 0")
    gram = x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)  # (d, d)
    chol = torch.linalg.cholesky(gram)                                               # XᵀX + λI = L Lᵀ
    return torch.cholesky_solve((x.T @ y).unsqueeze(1), chol).squeeze(1)            # L Lᵀ ŵ = Xᵀy


def qr_least_squares(x: Tensor, y: Tensor, ridge: float = 0.0) -> Tensor:
    """ŵ = R⁻¹ Qᵀ y with X = QR; ridge by stacking √λ·I under X (and zeros under y)."""
    _check_xy(x, y)
    if ridge < 0:
        raise ValueError(f"ridge λ={ridge} must be ≥ 0")
    if ridge:
        # ‖Xw − y‖² + λ‖w‖² = ‖[X; √λ I] w − [y; 0]‖²
        d = x.shape[1]
        x = torch.cat([x, ridge ** 0.5 * torch.eye(d, dtype=x.dtype, device=x.device)])
        y = torch.cat([y, torch.zeros(d, dtype=y.dtype, device=y.device)])
    q, r = torch.linalg.qr(x)                                                        # (n, d), (d, d)
    return torch.linalg.solve_triangular(r, (q.T @ y).unsqueeze(1), upper=True).squeeze(1)


def gaussian_map(x: Tensor, y: Tensor, noise_var: float, prior_var: float) -> Tensor:
    """MAP weights under y ~ N(Xw, σ²), w ~ N(0, τ²I): ridge with λ = σ²/τ²."""
    if noise_var <= 0 or prior_var <= 0:
        raise ValueError(f"variances must be > 0, got noise {noise_var}, prior {prior_var}")
    return qr_least_squares(x, y, ridge=noise_var / prior_var)


class BayesianLinearRegression:
    """Posterior over w for a Gaussian prior N(0, τ²I) and known noise σ²; predictive mean and std."""

    def __init__(self, noise_var: float, prior_var: float) -> None:
        if noise_var <= 0 or prior_var <= 0:
            raise ValueError(f"variances must be > 0, got noise {noise_var}, prior {prior_var}")
        self.noise_var, self.prior_var = noise_var, prior_var

    def fit(self, x: Tensor, y: Tensor) -> "BayesianLinearRegression":
        _check_xy(x, y)
        eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        # Bishop eq. 3.54: S_N⁻¹ = S₀⁻¹ + XᵀX/σ²
        precision = eye / self.prior_var + x.T @ x / self.noise_var                  # (d, d)
        self.cov = torch.linalg.inv(precision)                                        # S_N
        # Bishop eq. 3.53: m_N = S_N Xᵀy / σ²
        self.mean = self.cov @ x.T @ y / self.noise_var                               # (d,)
        return self

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean (n,), std (n,)) of the posterior predictive, Bishop eqs. 3.58–3.59."""
        mean = x @ self.mean
        # σ²_N(x) = σ² + xᵀ S_N x
        var = self.noise_var + ((x @ self.cov) * x).sum(1)
        return mean, var.sqrt()


def hinge_objective(w: Tensor, x: Tensor, y: Tensor, c: float) -> Tensor:
    """½‖w‖² + C Σ max(0, 1 − y wᵀx) for y ∈ {−1, +1}; x already holds the intercept column."""
    return 0.5 * w.pow(2).sum() + c * torch.clamp(1 - y * (x @ w), min=0).sum()


def linear_svm_ovr(x: Tensor, labels: Tensor, c: float = 1.0, steps: int = 3000) -> Tensor:
    """One-vs-rest linear SVMs for all K classes at once by full-batch subgradient descent on
    λ/2‖w_k‖² + mean_i max(0, 1 − y_ik w_kᵀx_i) (λ = 1/(Cn): hinge_objective's minimiser), step
    η_t = 1/(λt) (Pegasos' schedule, Shalev-Shwartz et al. 2007) and the average of the second-half
    iterates (suffix averaging, Rakhlin et al. 2012: O(1/t) for strongly convex objectives).
    x (n, d), labels (n,) in 0..K−1 -> W (K, d + 1), the intercept as the last column."""
    if x.dim() != 2 or labels.shape != x.shape[:1]:
        raise ValueError(f"linear_svm_ovr wants x (n, d) and labels (n,), got {tuple(x.shape)}, {tuple(labels.shape)}")
    if c <= 0 or steps < 2:
        raise ValueError(f"C={c} must be > 0 and steps={steps} ≥ 2")
    xi = add_intercept(x)                                                            # (n, d+1)
    n, classes = xi.shape[0], int(labels.max()) + 1
    y = torch.where(labels[:, None] == torch.arange(classes)[None], 1.0, -1.0).to(x.dtype)  # (n, K) ±1
    lam = 1.0 / (c * n)
    w = torch.zeros(classes, xi.shape[1], dtype=x.dtype)                             # (K, d+1)
    avg = torch.zeros_like(w)
    for t in range(1, steps + 1):
        margin = y * (xi @ w.T)                                                      # y wᵀx, (n, K)
        # subgradient: λw − (1/n) Σ_i y_i x_i [y_i wᵀx_i < 1]
        grad = lam * w - (y * (margin < 1)).T @ xi / n                               # (K, d+1)
        w = w - grad / (lam * t)                                                     # η_t = 1/(λt)
        if t > steps // 2:
            avg += (w - avg) / (t - steps // 2)                                      # running mean
    return avg


def svm_decision(w: Tensor, x: Tensor) -> Tensor:
    """Decision values (n, K) = [x, 1] Wᵀ."""
    return add_intercept(x) @ w.T
