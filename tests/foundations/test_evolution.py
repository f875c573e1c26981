"""ES gradient and NSGA-II pieces against exact answers, brute force and pymoo."""
import numpy as np
import pytest

from deepatlas.foundations.evolution import (ZDT_HYPERVOLUME, centered_ranks, crowding_distance, es_gradient,
                                             fast_non_dominated_sort, hypervolume_2d, nsga2, openai_es, zdt)


def test_es_gradient_unbiased_on_a_quadratic():
    a = np.diag([1.0, 4.0, 9.0])
    f = lambda x: 0.5 * np.einsum("pi,ij,pj->p", x, a, x)
    theta = np.array([1.0, -0.5, 0.3])
    g = es_gradient(f, theta, sigma=0.5, pairs=100000, rng=np.random.default_rng(0), shaping=False)
    # antithetic pairs cancel the quadratic term: ĝ = mean(ε εᵀ) Aθ, so E[ĝ] = ∇f = Aθ; std ‖Aθ‖/√100k ≈ 0.011
    np.testing.assert_allclose(g, a @ theta, atol=0.05)


def test_centered_ranks_and_es_minimises():
    np.testing.assert_allclose(centered_ranks(np.array([3.0, -1.0, 10.0])), [0.0, -0.5, 0.5])
    f = lambda x: ((x - 2.0) ** 2).sum(1)
    theta, hist = openai_es(f, np.zeros(4), steps=300, sigma=0.1, pairs=10, lr=0.05)
    assert hist[-1] < 1e-2 and np.abs(theta - 2).max() < 0.1


def _brute_force_fronts(f):
    remaining, fronts = list(range(len(f))), []
    while remaining:
        front = [p for p in remaining
                 if not any(np.all(f[q] <= f[p]) and np.any(f[q] < f[p]) for q in remaining)]
        fronts.append(sorted(front))
        remaining = [p for p in remaining if p not in front]
    return fronts


def test_fast_non_dominated_sort_equals_brute_force():
    rng = np.random.default_rng(0)
    for m in (2, 3):
        f = rng.integers(0, 6, (60, m)).astype(float)          # many ties and duplicates
        assert [sorted(fr.tolist()) for fr in fast_non_dominated_sort(f)] == _brute_force_fronts(f)


def test_crowding_distance_hand_computed():
    f = np.array([[0.0, 1.0], [0.25, 0.5], [0.5, 0.25], [1.0, 0.0]])
    d = crowding_distance(f)
    assert np.isinf(d[0]) and np.isinf(d[3])
    np.testing.assert_allclose(d[1:3], [0.5 / 1 + 0.75 / 1, 0.75 / 1 + 0.5 / 1])


def test_hypervolume_exact_and_pymoo():
    f1 = np.linspace(0, 1, 2001)
    front = np.stack([f1, 1 - np.sqrt(f1)], 1)
    assert hypervolume_2d(front) == pytest.approx(ZDT_HYPERVOLUME[1], abs=1e-3)
    pts = np.random.default_rng(1).random((40, 2))
    hv = pytest.importorskip("pymoo.indicators.hv", reason="pymoo not installed: pip install pymoo")
    assert hypervolume_2d(pts, (1.1, 1.1)) == pytest.approx(hv.HV(ref_point=np.array([1.1, 1.1]))(pts), rel=1e-12)


def test_zdt_front_and_nsga2_converges():
    x = np.zeros((5, 30)); x[:, 0] = np.linspace(0, 1, 5)      # g = 1: on the true front
    np.testing.assert_allclose(zdt(x, 1)[:, 1], 1 - np.sqrt(x[:, 0]))
    np.testing.assert_allclose(zdt(x, 2)[:, 1], 1 - x[:, 0] ** 2)
    _, f = nsga2(lambda x: zdt(x, 1), n_var=10, pop=40, generations=200, seed=0)
    assert hypervolume_2d(f) > 0.9 * ZDT_HYPERVOLUME[1]
    with pytest.raises(ValueError, match="pop"):
        nsga2(lambda x: zdt(x, 1), n_var=3, pop=5)


def test_cma_es_against_the_cma_package():
    cma = pytest.importorskip("cma", reason="cma not installed: pip install cma (comes with pymoo)")
    from deepatlas.foundations.evolution import cma_es, rosenbrock
    ours, theirs = [], []
    for seed in range(3):
        x, h = cma_es(rosenbrock, np.zeros(5), 0.5, 20000, target=1e-8, seed=seed)
        assert h[-1][1] <= 1e-8 and np.abs(x - 1).max() < 1e-3
        ours.append(h[-1][0])
        es = cma.CMAEvolutionStrategy(np.zeros(5), 0.5, {"seed": seed + 1, "verbose": -9, "ftarget": 1e-8})
        es.optimize(lambda v: float(rosenbrock(np.asarray(v)[None])[0]))
        theirs.append(es.result.evaluations)
    # the same algorithm: the evaluations needed agree within a factor of 1.5 (medians over seeds)
    assert np.median(ours) <= 1.5 * np.median(theirs) and np.median(theirs) <= 1.5 * np.median(ours), (ours, theirs)
