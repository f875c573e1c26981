"""Scaling-law fits recover known laws; the allocations are the minimisers they claim to be."""
from __future__ import annotations

import numpy as np
import pytest

from deepatlas.core.scaling import (ScalingFit, bootstrap_fits, fit_kaplan, fit_scaling_law,
                                    inference_aware_optimum, interval)

TRUE = ScalingFit(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28)   # Chinchilla's fitted law


def _points(noise=0.0, seed=0):
    N, D = np.meshgrid(np.geomspace(1e5, 1e8, 5), np.geomspace(1e7, 1e10, 4))
    N, D = N.ravel(), D.ravel()
    L = TRUE.predict(N, D) * np.exp(noise * np.random.default_rng(seed).standard_normal(N.size))
    return N, D, L


def test_fit_recovers_chinchilla_law():
    fit = fit_scaling_law(*_points())
    for key in ("E", "alpha", "beta"):
        assert getattr(fit, key) == pytest.approx(getattr(TRUE, key), rel=0.02), key


def test_bootstrap_interval_covers_truth_with_noise():
    N, D, L = _points(noise=0.003, seed=1)
    fits = bootstrap_fits(N, D, L, n_boot=40, seed=0)
    lo, hi = interval([f.alpha for f in fits])
    assert lo < TRUE.alpha < hi and hi - lo < 0.2


def test_optimal_allocation_is_the_argmin_on_the_iso_flop_line():
    C = 1e21
    N_opt, D_opt = TRUE.optimal_allocation(C)
    assert 6 * N_opt * D_opt == pytest.approx(C)
    grid = np.geomspace(N_opt / 30, N_opt * 30, 2001)
    assert grid[np.argmin(TRUE.predict(grid, C / (6 * grid)))] == pytest.approx(N_opt, rel=0.01)


def test_kaplan_line_and_inference_aware_shift():
    N = np.geomspace(1e4, 1e7, 6)
    alpha, Nc = fit_kaplan(N, (8.8e13 / N) ** 0.076)                 # Kaplan's L(N)
    assert alpha == pytest.approx(0.076) and Nc == pytest.approx(8.8e13, rel=1e-6)
    none = inference_aware_optimum(TRUE, 2.3, 0.0)
    lots = inference_aware_optimum(TRUE, 2.3, 1e13)
    assert lots["N"] < none["N"] and lots["tokens_per_param"] > none["tokens_per_param"]
    # without inference it is the Chinchilla optimum of the compute that reaches the target
    N_opt, D_opt = TRUE.optimal_allocation(none["flops"])
    assert none["N"] == pytest.approx(N_opt, rel=0.03)
    with pytest.raises(ValueError, match="irreducible"):
        inference_aware_optimum(TRUE, 1.5, 0.0)
