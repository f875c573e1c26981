"""F8: evolution strategies reach gradient descent's solution; NSGA-II finds the ZDT Pareto fronts.

Part A — least squares on the diabetes data (F7's problem, y scaled to unit variance):
f(w) = ½ mean (Xw − y)², optimum f* from the closed form. OpenAI-ES (antithetic pairs, centred-rank
fitness shaping, F3's Adam; deepatlas.foundations.evolution) uses only values of f; gradient descent (F3's
heavy-ball SGD) uses ∇f. Both reach f*; the cost is counted in evaluations (one ES step = 2·pairs values
of f; one GD step = one gradient, which costs about two evaluations by reverse mode). Where the gradient
is useless — the same loss on quantised weights q(w) = round(8w)/8, piecewise constant so ∇f = 0 almost
everywhere — GD does not move while ES, following the Gaussian-smoothed f_σ, still descends. CMA-ES
(ours, checked against the `cma` package on Rosenbrock-5) learns the problem's covariance and needs far
fewer evaluations than OpenAI-ES on this ill-conditioned problem.

Part B — NSGA-II (fast non-dominated sorting, crowding distance, elitism; checked against a brute-force
sort on its own final population) on ZDT1 (convex front f₂ = 1 − √f₁) and ZDT2 (concave, f₂ = 1 − f₁²),
30 variables: the hypervolume w.r.t. (1, 1) against the true front's 2/3 and 1/3, and against pymoo's
NSGA2 with the same population and generations (when pymoo is installed). Several seeds each.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.experiments.f7_classical import descend, diabetes
from deepatlas.foundations.classical import qr_least_squares
from deepatlas.foundations.evolution import (ZDT_HYPERVOLUME, cma_es, fast_non_dominated_sort, hypervolume_2d,
                                             nsga2, openai_es, rosenbrock, zdt)
from deepatlas.foundations.optim import SGD


@dataclass
class Config:
    es_steps: int = 1000
    es_pairs: int = 20
    es_sigma: float = 0.02
    es_lr: float = 0.02
    gd_steps: int = 300
    excess_tol: float = 1e-3        # (f − f*)/f* counted as "reached"
    quant_steps: int = 600
    pop: int = 100
    generations: int = 250
    n_var: int = 30
    moo_seeds: int = 3
    hv_fraction: float = 0.97       # of the true front's hypervolume
    seed: int = 0


def _first_below(values: list[float], cost_per_step: int, tol: float) -> int | None:
    hit = next((i for i, v in enumerate(values) if v <= tol), None)
    return None if hit is None else (hit + 1) * cost_per_step


def _brute_force_first_front(f: np.ndarray) -> list[int]:
    return sorted(p for p in range(len(f))
                  if not any(np.all(f[q] <= f[p]) and np.any(f[q] < f[p]) for q in range(len(f))))


def _pymoo_hv(which: int, cfg: Config, seed: int) -> float | None:
    try:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.optimize import minimize
        from pymoo.problems import get_problem
    except ImportError:
        return None
    res = minimize(get_problem(f"zdt{which}", n_var=cfg.n_var), NSGA2(pop_size=cfg.pop), ("n_gen", cfg.generations),
                   seed=seed, verbose=False)
    return hypervolume_2d(res.F)


@experiment("F8", "evolution-nsga2",
            claim="OpenAI-ES and CMA-ES reach the least-squares optimum gradient descent reaches on the diabetes "
                  "data ((f − f*)/f* ≤ 1e-3) using only function values, at a measured cost in evaluations, ES keeps "
                  "descending on quantised weights where GD's gradient is zero, our CMA-ES solves Rosenbrock-5 in "
                  "as many evaluations as the cma package (≤ 1.5×); NSGA-II's front reaches ≥ 97% of "
                  "the true ZDT1/ZDT2 hypervolume on every seed, level with pymoo's NSGA2 on the same budget",
            config=Config, quick={"es_steps": 600, "quant_steps": 300, "pop": 60, "generations": 120, "moo_seeds": 1,
                                  "hv_fraction": 0.95},
            one_thread=True,
            headline={"es_evals_to_tol": ("ES evaluations to (f−f*)/f* ≤ 1e-3", "{}"),
                      "cma_evals_to_tol": ("CMA-ES", "{}"),
                      "gd_evals_to_tol": ("GD gradient evaluations", "{}"),
                      "hv_ratio_zdt1": ("ZDT1 hypervolume / true", "{:.3f}"),
                      "hv_ratio_zdt2": ("ZDT2", "{:.3f}")})
def evolution_nsga2(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.time()
    # ---- A: ES vs GD on least squares ---------------------------------------------------------
    x, y = diabetes()
    y = y / y.std()
    xn, yn = x.numpy(), y.numpy()
    w_star = qr_least_squares(x, y).numpy()
    loss = lambda w: 0.5 * ((w @ xn.T - yn) ** 2).mean(1)                  # f on a batch of points (P, d)
    f_star = float(loss(w_star[None])[0])
    w_es, hist_es = openai_es(loss, np.zeros(x.shape[1]), cfg.es_steps, cfg.es_sigma, cfg.es_pairs, cfg.es_lr, cfg.seed)
    excess_es = [(v - f_star) / f_star for v in hist_es]
    lip = float(torch.linalg.eigvalsh(x.T @ x / len(y))[-1])
    excess_gd = []
    for t in range(1, cfg.gd_steps + 1, max(1, cfg.gd_steps // 60)):        # GD's curve on a grid of step counts
        w = descend(x, y, lambda p: SGD(p, lr=1.0 / lip, momentum=0.9), t).numpy()
        excess_gd.append((t, (float(loss(w[None])[0]) - f_star) / f_star))
    es_evals = _first_below(excess_es, 2 * cfg.es_pairs, cfg.excess_tol)
    gd_evals = next((t for t, v in excess_gd if v <= cfg.excess_tol), None)
    es_dist = float(np.linalg.norm(w_es - w_star) / np.linalg.norm(w_star))
    run.print(f"least squares: ES excess {excess_es[-1]:.1e} after {cfg.es_steps} steps "
              f"({cfg.es_steps * 2 * cfg.es_pairs} evaluations; ≤ {cfg.excess_tol} after {es_evals}), "
              f"‖w_ES − w*‖/‖w*‖ {es_dist:.3f}; GD ≤ {cfg.excess_tol} after {gd_evals} gradients")

    # CMA-ES adapts its covariance to the curvature: on the same ill-conditioned problem, and on Rosenbrock vs `cma`
    _, hist_cma = cma_es(loss, np.zeros(x.shape[1]), 0.5, 20000, target=f_star * (1 + cfg.excess_tol), seed=cfg.seed)
    cma_evals = hist_cma[-1][0] if hist_cma[-1][1] <= f_star * (1 + cfg.excess_tol) else None
    rosen_ours, rosen_ref = [], []
    for seed in range(cfg.seed, cfg.seed + cfg.moo_seeds):
        _, h = cma_es(rosenbrock, np.zeros(5), 0.5, 20000, target=1e-8, seed=seed)
        rosen_ours.append(h[-1][0] if h[-1][1] <= 1e-8 else None)
        try:
            import cma
            es = cma.CMAEvolutionStrategy(np.zeros(5), 0.5, {"seed": seed + 1, "verbose": -9, "ftarget": 1e-8})
            es.optimize(lambda v: float(rosenbrock(np.asarray(v)[None])[0]))
            rosen_ref.append(int(es.result.evaluations))
        except ImportError:
            pass
    run.print(f"CMA-ES: least squares ≤ {cfg.excess_tol} after {cma_evals} evaluations; Rosenbrock-5 to 1e-8 after "
              f"{rosen_ours} evaluations (the cma package: {rosen_ref})")

    # quantised weights: ∇ round = 0 almost everywhere
    quant = lambda w: np.round(8 * w) / 8
    qloss = lambda w: loss(quant(w))
    f0 = float(qloss(np.zeros((1, x.shape[1])))[0])
    _, hist_q = openai_es(qloss, np.zeros(x.shape[1]), cfg.quant_steps, 0.1, cfg.es_pairs, 0.02, cfg.seed)
    wq = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = SGD([wq], lr=1.0 / lip, momentum=0.9)
    for _ in range(cfg.quant_steps):
        lq = 0.5 * ((x @ (torch.round(8 * wq) / 8) - y) ** 2).mean()
        opt.zero_grad(); lq.backward(); opt.step()
    gd_quant = float(qloss(wq.detach().numpy()[None])[0])
    es_quant = hist_q[-1]
    run.print(f"quantised weights: start {f0:.4f}, ES {es_quant:.4f}, GD {gd_quant:.4f} (f* unquantised {f_star:.4f}); "
              f"GD's gradient norm {float(wq.grad.norm()) if wq.grad is not None else 0.0:.1e}")

    # ---- B: NSGA-II on ZDT1/ZDT2 -----------------------------------------------------------------
    moo, fronts = {}, {}
    for which in (1, 2):
        ours, theirs, sort_ok = [], [], True
        for seed in range(cfg.seed, cfg.seed + cfg.moo_seeds):
            _, f = nsga2(lambda z: zdt(z, which), cfg.n_var, cfg.pop, cfg.generations, seed=seed)
            ours.append(hypervolume_2d(f))
            sort_ok &= sorted(fast_non_dominated_sort(f)[0].tolist()) == _brute_force_first_front(f)
            hv_ref = _pymoo_hv(which, cfg, seed)
            if hv_ref is not None:
                theirs.append(hv_ref)
            if seed == cfg.seed:
                fronts[which] = f[fast_non_dominated_sort(f)[0]]
        true = ZDT_HYPERVOLUME[which]
        moo[which] = {"ours": ours, "pymoo": theirs, "sort_ok": sort_ok, "ratio_min": min(ours) / true}
        run.log(part="nsga2", problem=f"zdt{which}", hv_ours=ours, hv_pymoo=theirs, hv_true=true)
        run.print(f"ZDT{which}: hypervolume ours {[round(h, 4) for h in ours]}, pymoo {[round(h, 4) for h in theirs]}, "
                  f"true {true:.4f}; first front = brute force: {sort_ok}")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    es_x = (np.arange(len(excess_es)) + 1) * 2 * cfg.es_pairs
    axes[0].loglog(es_x, np.maximum(excess_es, 1e-12), label=f"OpenAI-ES ({2 * cfg.es_pairs} evals/step)")
    axes[0].loglog([t for t, _ in excess_gd], [max(v, 1e-12) for _, v in excess_gd], "o-", ms=3,
                   label="heavy-ball GD (1 gradient/step)")
    axes[0].loglog([e for e, _ in hist_cma], [max((v - f_star) / f_star, 1e-12) for _, v in hist_cma],
                   label="CMA-ES (best so far)")
    axes[0].axhline(cfg.excess_tol, c="k", ls=":")
    axes[0].set(xlabel="function / gradient evaluations", ylabel="(f − f*) / f*", title="least squares, diabetes")
    axes[0].legend()
    axes[1].plot(np.arange(1, len(hist_q) + 1), hist_q, label="OpenAI-ES (σ = 0.1)")
    axes[1].axhline(gd_quant, c="C1", label="GD (∇ = 0: never moves)")
    axes[1].axhline(f_star, c="k", ls=":", label="f* (unquantised)")
    axes[1].set(xlabel="step", ylabel="loss on round(8w)/8", title="quantised weights")
    axes[1].legend()
    f1 = np.linspace(0, 1, 200)
    for which, c in ((1, "C0"), (2, "C2")):
        axes[2].plot(f1, 1 - np.sqrt(f1) if which == 1 else 1 - f1 ** 2, c=c, lw=1, label=f"ZDT{which} true front")
        axes[2].scatter(*fronts[which].T, s=8, c=c, marker="x", label=f"NSGA-II (HV {moo[which]['ours'][0]:.3f})")
    axes[2].set(xlabel="f₁", ylabel="f₂", xlim=(0, 1), ylim=(0, 1.1), title="Pareto fronts found")
    axes[2].legend(fontsize=8)
    run.savefig(fig, "es_nsga2")

    metrics = {"f_star": f_star, "es_final_excess": excess_es[-1], "es_evals_to_tol": es_evals,
               "gd_evals_to_tol": gd_evals, "es_rel_dist": es_dist, "quant_start": f0, "quant_es": es_quant,
               "quant_gd": gd_quant, "cma_evals_to_tol": cma_evals, "cma_rosenbrock_evals": rosen_ours,
               "cma_package_rosenbrock_evals": rosen_ref, "seconds": 0.0}
    for which, r in moo.items():
        metrics.update({f"hv_zdt{which}": r["ours"], f"hv_pymoo_zdt{which}": r["pymoo"],
                        f"hv_ratio_zdt{which}": r["ratio_min"], f"sort_equals_brute_force_zdt{which}": r["sort_ok"]})
    metrics["seconds"] = time.time() - start
    level = all(not r["pymoo"] or min(r["ours"]) >= min(r["pymoo"]) - 0.02 for r in moo.values())
    cma_ok = cma_evals is not None and None not in rosen_ours and (
        not rosen_ref or np.median(rosen_ours) <= 1.5 * np.median(rosen_ref))
    held = (es_evals is not None and gd_evals is not None and es_quant < gd_quant - 0.5 * (f0 - f_star) and cma_ok
            and all(r["ratio_min"] >= cfg.hv_fraction and r["sort_ok"] for r in moo.values()) and level)
    return Verdict(held=held, metrics=metrics,
                   notes=f"held: ES and GD both reach (f − f*)/f* ≤ {cfg.excess_tol}; on quantised weights ES closes "
                         "over half the gap GD cannot move; CMA-ES reaches it too and solves Rosenbrock-5 on every seed "
                         "within 1.5× the cma package's median evaluations; NSGA-II's hypervolume ≥ "
                         f"{cfg.hv_fraction:.0%} of the true front's on every seed and ≥ pymoo's − 0.02, its first "
                         "front equal to a brute-force sort")
