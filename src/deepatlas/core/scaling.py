"""Scaling laws: fit L(N, D), bootstrap its exponents, and the compute allocation that follows.

Chinchilla (Hoffmann et al. 2022), approach 3, eq. (2) and §D.2:
    L(N, D) = E + A / N^α + B / D^β
    fitted by minimising Σ_i Huber_δ( LSE(a − α log N_i, b − β log D_i, e) − log L_i ),
    a = log A, b = log B, e = log E, δ = 1e-3, L-BFGS from a grid of starting points.
Compute-optimal allocation under C ≈ 6 N D (eq. 4):
    N_opt(C) = G (C/6)^{β/(α+β)},  D_opt(C) = G⁻¹ (C/6)^{α/(α+β)},  G = (αA / (βB))^{1/(α+β)}
Kaplan et al. 2020, eq. (1.1): L(N) = (N_c / N)^{α_N} for models trained to convergence — a
straight line in log-log, fitted here on the largest token budget of each size.
Inference-aware (Sardana et al. 2024, "Beyond Chinchilla-optimal"): for a target loss ℓ and a
lifetime of D_inf inference tokens, minimise 6 N D_train + 2 N D_inf subject to L(N, D_train) = ℓ;
the more inference, the smaller and longer-trained the optimal model.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass
class ScalingFit:
    E: float
    A: float
    alpha: float
    B: float
    beta: float
    loss: float = 0.0     # the Huber objective at the optimum

    def predict(self, N, D) -> np.ndarray:
        """L(N, D) = E + A/N^α + B/D^β."""
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    def optimal_allocation(self, C: float) -> tuple[float, float]:
        """(N_opt, D_opt) minimising L at compute C = 6 N D (Hoffmann et al. 2022 eq. 4)."""
        a, b = self.alpha, self.beta
        G = (a * self.A / (b * self.B)) ** (1.0 / (a + b))
        N = G * (C / 6.0) ** (b / (a + b))
        return N, C / (6.0 * N)


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    return np.where(np.abs(r) <= delta, 0.5 * r ** 2, delta * (np.abs(r) - 0.5 * delta))


def _objective(theta: np.ndarray, logN: np.ndarray, logD: np.ndarray, logL: np.ndarray,
               delta: float) -> tuple[float, np.ndarray]:
    """The Huber objective and its gradient in θ = (a, α, b, β, e)."""
    a, alpha, b, beta, e = theta
    z = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])   # (3, n)
    # log L̂ = LSE(a − α log N, b − β log D, e)
    pred = np.logaddexp(np.logaddexp(z[0], z[1]), z[2])
    r = pred - logL
    w = np.exp(z - pred)                                                       # softmax weights (3, n)
    dr = np.clip(r, -delta, delta)                                             # Huber'(r)
    grad = np.array([(dr * w[0]).sum(), -(dr * w[0] * logN).sum(), (dr * w[1]).sum(),
                     -(dr * w[1] * logD).sum(), (dr * w[2]).sum()])
    # divided by δ so that L-BFGS's default tolerances see an O(1) objective
    return float(_huber(r, delta).sum()) / delta, grad / delta


def fit_scaling_law(N, D, L, delta: float = 1e-3, starts: list[np.ndarray] | None = None) -> ScalingFit:
    """Chinchilla approach 3 on points (N_i, D_i, L_i); `starts` overrides the grid of initial θ."""
    from scipy.optimize import minimize

    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    if not (len(N) == len(D) == len(L)) or len(N) < 5:
        raise ValueError(f"need ≥ 5 points with N, D, L of one length; got {len(N)}, {len(D)}, {len(L)}")
    if (N <= 0).any() or (D <= 0).any() or (L <= 0).any():
        raise ValueError("N, D and L must all be positive")
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    if starts is None:   # Chinchilla's grid, coarser: a, b ∈ {0, 6, 12}, α, β ∈ {0.3}, e ∈ {−0.5, 0.5}
        starts = [np.array(s, dtype=float) for s in itertools.product(
            (0.0, 6.0, 12.0), (0.3,), (0.0, 6.0, 12.0), (0.3,), (-0.5, 0.5))]
    best = None
    for start in starts:
        res = minimize(_objective, start, args=(logN, logD, logL, delta), method="L-BFGS-B", jac=True,
                       bounds=[(-10, 40), (0.0, 3.0), (-10, 40), (0.0, 3.0), (-5, 3)],
                       options={"ftol": 1e-12, "gtol": 1e-9, "maxiter": 1000})
        if best is None or res.fun < best.fun:
            best = res
    a, alpha, b, beta, e = best.x
    return ScalingFit(E=float(np.exp(e)), A=float(np.exp(a)), alpha=float(alpha), B=float(np.exp(b)),
                      beta=float(beta), loss=float(best.fun) * delta)


def bootstrap_fits(N, D, L, n_boot: int = 200, seed: int = 0, delta: float = 1e-3,
                   start: ScalingFit | None = None) -> list[ScalingFit]:
    """Refit on n_boot resamples (with replacement) of the points; warm-started from `start`."""
    N, D, L = (np.asarray(v, dtype=float) for v in (N, D, L))
    rng = np.random.default_rng(seed)
    start = start or fit_scaling_law(N, D, L, delta)
    theta0 = np.array([np.log(start.A), start.alpha, np.log(start.B), start.beta, np.log(start.E)])
    starts = [theta0]
    fits = []
    for _ in range(n_boot):
        i = rng.integers(0, len(N), len(N))
        if len(np.unique(N[i])) < 2 or len(np.unique(D[i])) < 2:
            continue   # a resample with one size or one budget cannot identify both terms
        fits.append(fit_scaling_law(N[i], D[i], L[i], delta, starts=starts))
    return fits


def interval(values, level: float = 0.9) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap values."""
    lo = (1.0 - level) / 2.0
    return float(np.quantile(values, lo)), float(np.quantile(values, 1.0 - lo))


def fit_kaplan(N, L) -> tuple[float, float]:
    """L(N) = (N_c/N)^{α_N}: (α_N, N_c) from the line log L = α_N log N_c − α_N log N."""
    slope, intercept = np.polyfit(np.log(np.asarray(N, float)), np.log(np.asarray(L, float)), 1)
    alpha_n = -slope
    return float(alpha_n), float(np.exp(intercept / alpha_n)) if alpha_n > 0 else float("nan")


def inference_aware_optimum(fit: ScalingFit, target_loss: float, inference_tokens: float,
                            n_grid: int = 400) -> dict[str, float]:
    """Smallest total FLOPs 6 N D_train + 2 N D_inf with L(N, D_train) = target (Sardana et al. 2024)."""
    # the smallest N that can reach the target at all: E + A/N^α < target
    gap = target_loss - fit.E
    if gap <= 0:
        raise ValueError(f"target loss {target_loss} is not above the fitted irreducible loss E = {fit.E:.4f}")
    n_min = (fit.A / gap) ** (1.0 / fit.alpha)
    best = None
    for N in np.geomspace(n_min * 1.0001, n_min * 1e4, n_grid):
        rest = gap - fit.A / N ** fit.alpha                 # what B/D^β may still contribute
        D = (fit.B / rest) ** (1.0 / fit.beta)
        flops = 6 * N * D + 2 * N * inference_tokens
        if best is None or flops < best["flops"]:
            best = {"N": float(N), "D_train": float(D), "flops": float(flops)}
    best["tokens_per_param"] = best["D_train"] / best["N"]
    return best
