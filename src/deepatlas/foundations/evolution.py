"""Evolution strategies and multi-objective evolutionary search (map place F8).

OpenAI-ES (Salimans et al. 2017, Alg. 1 with antithetic pairs and fitness shaping): the gradient of the
Gaussian-smoothed objective f_σ(θ) = E_ε[f(θ + σε)] is
    ∇f_σ(θ) = E[f(θ + σε) ε] / σ ≈ (1/(nσ)) Σ_i (f(θ + σε_i) − f(θ − σε_i)) ε_i / 2   (antithetic),
with the differences replaced by centred ranks in [−½, ½] (Wierstra et al. 2014), which makes the step
invariant to monotone transforms of f. Only f's values are needed — no gradient — so it also works where
∇f is zero almost everywhere (a quantised objective). For a quadratic, f_σ = f + const, so the
unshaped estimate is unbiased for ∇f itself (tests/foundations/test_evolution.py).

CMA-ES (Hansen & Ostermeier 2001; Hansen 2016's tutorial, Table 1) adapts a full covariance C of the
search distribution from the ranked samples (rank-μ and rank-one updates, cumulative step-size control);
checked against the `cma` package on Rosenbrock (evaluations to 1e-8, several seeds).

NSGA-II (Deb, Pratap, Agarwal & Meyarivan 2002): fast non-dominated sorting into fronts F₁, F₂, ...
(§III-A), crowding distance within a front (§III-B), binary tournament on (rank, −crowding), simulated
binary crossover (Deb & Agrawal 1995) and polynomial mutation, and elitist (μ + λ) survival of the best
N of parents ∪ children (§III-C). ZDT1/ZDT2 (Zitzler, Deb & Thiele 2000) have the known Pareto fronts
f₂ = 1 − √f₁ and f₂ = 1 − f₁² (g = 1), whose hypervolumes w.r.t. (1, 1) are 2/3 and 1/3.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from deepatlas.foundations.optim import Adam


# ---------------------------------------------------------------- evolution strategies
def centered_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks mapped to [−½, ½] (the smallest value gets −½): fitness shaping."""
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks / (len(values) - 1) - 0.5


def es_gradient(f: Callable[[np.ndarray], np.ndarray], theta: np.ndarray, sigma: float, pairs: int,
                rng: np.random.Generator, shaping: bool = True) -> np.ndarray:
    """Antithetic estimate of ∇f_σ(θ) from 2·pairs evaluations. f maps (P, d) points to (P,) values."""
    if sigma <= 0 or pairs < 1:
        raise ValueError(f"sigma={sigma} must be > 0 and pairs={pairs} ≥ 1")
    eps = rng.standard_normal((pairs, theta.size))                           # ε_i, (n/2, d)
    values = f(np.concatenate([theta + sigma * eps, theta - sigma * eps]))    # (n,)
    if shaping:
        values = centered_ranks(values)
    plus, minus = values[:pairs], values[pairs:]
    # ∇f_σ ≈ (1/(nσ)) Σ_i (f(θ+σε_i) − f(θ−σε_i)) ε_i,  n = 2·pairs
    return ((plus - minus) @ eps) / (2 * pairs * sigma)


def openai_es(f: Callable[[np.ndarray], np.ndarray], theta0: np.ndarray, steps: int, sigma: float = 0.1,
              pairs: int = 20, lr: float = 0.05, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Minimise f by ES steps fed to F3's Adam; returns the final θ and f(θ) after each step."""
    rng = np.random.default_rng(seed)
    theta = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    opt = Adam([theta], lr=lr)
    history = []
    for _ in range(steps):
        theta.grad = torch.from_numpy(es_gradient(f, theta.detach().numpy(), sigma, pairs, rng))
        opt.step()
        history.append(float(f(theta.detach().numpy()[None])[0]))
    return theta.detach().numpy(), history


def cma_es(f: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, sigma0: float, max_evals: int,
           target: float = -np.inf, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """CMA-ES (Hansen 2016, "The CMA Evolution Strategy: A Tutorial", Table 1 and Fig. 6) with its default
    population λ = 4 + ⌊3 ln n⌋. Returns the best point and (evaluations, best f so far) per generation."""
    n = x0.size
    lam = 4 + int(3 * np.log(n))
    mu = lam // 2
    w = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    w /= w.sum()                                                          # positive recombination weights
    mu_eff = 1.0 / (w ** 2).sum()
    c_sigma = (mu_eff + 2) / (n + mu_eff + 5)
    d_sigma = 1 + 2 * max(0.0, np.sqrt((mu_eff - 1) / (n + 1)) - 1) + c_sigma
    c_c = (4 + mu_eff / n) / (n + 4 + 2 * mu_eff / n)
    c_1 = 2 / ((n + 1.3) ** 2 + mu_eff)
    c_mu = min(1 - c_1, 2 * (mu_eff - 2 + 1 / mu_eff) / ((n + 2) ** 2 + mu_eff))
    chi_n = np.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n ** 2))          # E‖N(0, I)‖
    rng = np.random.default_rng(seed)
    m, sigma = x0.astype(np.float64).copy(), sigma0
    cov, p_sigma, p_c = np.eye(n), np.zeros(n), np.zeros(n)
    best_x, best_f, evals, history, gen = m.copy(), np.inf, 0, [], 0
    while evals < max_evals and best_f > target:
        eigval, b = np.linalg.eigh(cov)
        d = np.sqrt(np.maximum(eigval, 1e-20))
        z = rng.standard_normal((lam, n))
        y = z * d @ b.T                                                   # y_k = B D z_k ~ N(0, C)
        x = m + sigma * y                                                 # x_k = m + σ y_k
        fx = f(x)
        evals += lam
        order = np.argsort(fx)
        if fx[order[0]] < best_f:
            best_f, best_x = float(fx[order[0]]), x[order[0]].copy()
        history.append((evals, best_f))
        y_w = w @ y[order[:mu]]                                           # ⟨y⟩_w
        m = m + sigma * y_w                                               # m ← m + c_m σ ⟨y⟩_w, c_m = 1
        c_inv_sqrt = b @ np.diag(1 / d) @ b.T
        # p_σ ← (1 − c_σ) p_σ + √(c_σ(2 − c_σ) μ_eff) C^{−½} ⟨y⟩_w
        p_sigma = (1 - c_sigma) * p_sigma + np.sqrt(c_sigma * (2 - c_sigma) * mu_eff) * c_inv_sqrt @ y_w
        # σ ← σ exp((c_σ/d_σ)(‖p_σ‖/E‖N(0, I)‖ − 1))
        sigma *= np.exp((c_sigma / d_sigma) * (np.linalg.norm(p_sigma) / chi_n - 1))
        gen += 1
        h_sigma = float(np.linalg.norm(p_sigma) / np.sqrt(1 - (1 - c_sigma) ** (2 * gen)) < (1.4 + 2 / (n + 1)) * chi_n)
        p_c = (1 - c_c) * p_c + h_sigma * np.sqrt(c_c * (2 - c_c) * mu_eff) * y_w
        rank_mu = (w[:, None] * y[order[:mu]]).T @ y[order[:mu]]          # Σ w_i y_i y_iᵀ
        # C ← (1 − c₁ − c_μ) C + c₁ (p_c p_cᵀ + δ(h_σ) C) + c_μ Σ w_i y_i y_iᵀ
        delta = (1 - h_sigma) * c_c * (2 - c_c)
        cov = (1 - c_1 - c_mu) * cov + c_1 * (np.outer(p_c, p_c) + delta * cov) + c_mu * rank_mu
        cov = np.triu(cov) + np.triu(cov, 1).T                            # keep it exactly symmetric
    return best_x, history


def rosenbrock(x: np.ndarray) -> np.ndarray:
    """Σ_i 100 (x_{i+1} − x_i²)² + (1 − x_i)², minimum 0 at x = 1; (P, n) -> (P,)."""
    return (100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2).sum(1)


# ---------------------------------------------------------------- NSGA-II
def dominates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a ≺ b (minimisation): no worse in every objective and better in one. a (n, m), b (k, m) -> (n, k)."""
    le = (a[:, None, :] <= b[None, :, :]).all(-1)
    lt = (a[:, None, :] < b[None, :, :]).any(-1)
    return le & lt


def fast_non_dominated_sort(f: np.ndarray) -> list[np.ndarray]:
    """Deb et al. 2002 §III-A: fronts as index arrays, F₁ first. f (n, m) objective values."""
    dom = dominates(f, f)                              # dom[p, q]: p dominates q
    count = dom.sum(0)                                 # n_q: how many dominate q
    fronts, current = [], np.nonzero(count == 0)[0]
    while current.size:
        fronts.append(current)
        # removing front F_i lowers n_q by the number of its members that dominate q
        count = count - dom[current].sum(0)
        count[current] = -1                            # done
        current = np.nonzero(count == 0)[0]
    return fronts


def crowding_distance(f: np.ndarray) -> np.ndarray:
    """Deb et al. 2002 §III-B: Σ_m (f_m[next] − f_m[prev]) / (f_m^max − f_m^min); boundary points ∞."""
    n, m = f.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(f[:, j], kind="stable")
        span = f[order[-1], j] - f[order[0], j]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (f[order[2:], j] - f[order[:-2], j]) / span
    return dist


def rank_and_crowding(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rank, crowd = np.zeros(len(f), dtype=np.int64), np.zeros(len(f))
    for r, front in enumerate(fast_non_dominated_sort(f)):
        rank[front] = r
        crowd[front] = crowding_distance(f[front])
    return rank, crowd


def _sbx(p1: np.ndarray, p2: np.ndarray, eta: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Simulated binary crossover on [0, 1] (Deb & Agrawal 1995): the spread β has the polynomial density
    of eq. (4); each variable crosses with probability ½, and the two children's values of a crossed
    variable are swapped with probability ½ (as in Deb's NSGA-II code: it mixes the parents' variables)."""
    u = rng.random(p1.shape)
    beta = np.where(u <= 0.5, (2 * u) ** (1 / (eta + 1)), (1 / (2 * (1 - u))) ** (1 / (eta + 1)))
    cross = rng.random(p1.shape) < 0.5
    beta = np.where(cross, beta, 1.0)
    c1 = 0.5 * ((1 + beta) * p1 + (1 - beta) * p2)           # c₁,₂ = ½((1 ± β) p₁ + (1 ∓ β) p₂)
    c2 = 0.5 * ((1 - beta) * p1 + (1 + beta) * p2)
    swap = cross & (rng.random(p1.shape) < 0.5)
    c1, c2 = np.where(swap, c2, c1), np.where(swap, c1, c2)
    return np.clip(c1, 0, 1), np.clip(c2, 0, 1)


def _polynomial_mutation(x: np.ndarray, eta: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Deb & Goyal 1996: δ = (2u)^{1/(η+1)} − 1 or 1 − (2(1 − u))^{1/(η+1)}, on [0, 1]."""
    u = rng.random(x.shape)
    delta = np.where(u < 0.5, (2 * u) ** (1 / (eta + 1)) - 1, 1 - (2 * (1 - u)) ** (1 / (eta + 1)))
    return np.clip(np.where(rng.random(x.shape) < rate, x + delta, x), 0, 1)


def nsga2(problem: Callable[[np.ndarray], np.ndarray], n_var: int, pop: int = 100, generations: int = 200,
          eta_c: float = 15.0, eta_m: float = 20.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Minimise the objectives problem(X (P, n_var) in [0, 1]) -> (P, m). Returns the final population
    (X, F); its first front is the approximation of the Pareto front."""
    if pop < 4 or pop % 2:
        raise ValueError(f"pop={pop} must be an even number ≥ 4")
    rng = np.random.default_rng(seed)
    x = rng.random((pop, n_var))
    f = problem(x)
    for _ in range(generations):
        rank, crowd = rank_and_crowding(f)
        # binary tournament: the lower rank wins, then the larger crowding distance
        a, b = rng.integers(0, pop, (2, pop))
        better = (rank[a] < rank[b]) | ((rank[a] == rank[b]) & (crowd[a] > crowd[b]))
        parents = x[np.where(better, a, b)]
        c1, c2 = _sbx(parents[0::2], parents[1::2], eta_c, rng)
        children = _polynomial_mutation(np.concatenate([c1, c2]), eta_m, 1.0 / n_var, rng)
        # elitism: the best `pop` of parents ∪ children by (rank, −crowding)
        x_all, f_all = np.concatenate([x, children]), np.concatenate([f, problem(children)])
        rank, crowd = rank_and_crowding(f_all)
        keep = np.lexsort((-crowd, rank))[:pop]
        x, f = x_all[keep], f_all[keep]
    return x, f


def zdt(x: np.ndarray, which: int = 1) -> np.ndarray:
    """ZDT1 / ZDT2 on x ∈ [0, 1]^n: f₁ = x₁, g = 1 + 9 Σ_{i≥2} x_i / (n − 1), f₂ = g·h(f₁/g)."""
    if which not in (1, 2):
        raise ValueError(f"zdt which={which}; valid: 1 (convex front), 2 (concave front)")
    f1 = x[:, 0]
    g = 1 + 9 * x[:, 1:].sum(1) / (x.shape[1] - 1)
    h = 1 - np.sqrt(f1 / g) if which == 1 else 1 - (f1 / g) ** 2
    return np.stack([f1, g * h], 1)


ZDT_HYPERVOLUME = {1: 2.0 / 3.0, 2: 1.0 / 3.0}     # of the true front w.r.t. the reference point (1, 1)


def hypervolume_2d(f: np.ndarray, ref: tuple[float, float] = (1.0, 1.0)) -> float:
    """Area dominated by the points f (n, 2) and bounded by ref (minimisation), exact."""
    pts = f[(f[:, 0] < ref[0]) & (f[:, 1] < ref[1])]
    if not len(pts):
        return 0.0
    pts = pts[fast_non_dominated_sort(pts)[0]]
    pts = pts[np.argsort(pts[:, 0])]                   # f₁ ascending ⇒ f₂ descending on a front
    right = np.append(pts[1:, 0], ref[0])
    # Σ of the rectangles [f₁ᵢ, f₁ᵢ₊₁] × [f₂ᵢ, ref₂]
    return float(((right - pts[:, 0]) * (ref[1] - pts[:, 1])).sum())
