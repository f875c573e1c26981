"""FID's Fréchet distance against scipy's sqrtm and closed forms; KID, IS, precision/recall on known cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deepatlas.metrics.fid import fid, frechet_distance, inception_score, kid, precision_recall, sqrtm_psd


def _spd(d, seed):
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_sqrtm_and_trace_term_equal_scipy():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = _spd(12, 0), _spd(12, 1)
    root = sqrtm_psd(s1)
    torch.testing.assert_close(root @ root, s1)
    torch.testing.assert_close(root, torch.from_numpy(np.real(scipy_linalg.sqrtm(s1.numpy()))))
    mu1, mu2 = torch.randn(12, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    # the textbook formula with scipy's (non-symmetric) sqrtm of Σ₁Σ₂
    covmean = np.real(scipy_linalg.sqrtm(s1.numpy() @ s2.numpy()))
    want = float(((mu1 - mu2) ** 2).sum() + np.trace(s1.numpy() + s2.numpy() - 2 * covmean))
    assert abs(frechet_distance(mu1, s1, mu2, s2) - want) < 1e-8 * max(1.0, want)


def test_frechet_distance_closed_forms():
    d = 5
    mu = torch.arange(d, dtype=torch.float64)
    s = _spd(d, 2)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    # diagonal Gaussians: W₂² = Σ (μ₁ᵢ − μ₂ᵢ)² + Σ (σ₁ᵢ − σ₂ᵢ)²
    sd1 = torch.tensor([1.0, 2, 3, 0.5, 1], dtype=torch.float64)
    sd2 = torch.tensor([2.0, 1, 3, 1.5, 0.1], dtype=torch.float64)
    m1, m2 = torch.zeros(d, dtype=torch.float64), torch.tensor([1.0, -1, 0, 2, 0], dtype=torch.float64)
    want = float(((m1 - m2) ** 2).sum() + ((sd1 - sd2) ** 2).sum())
    got = frechet_distance(m1, torch.diag(sd1 ** 2), m2, torch.diag(sd2 ** 2))
    assert got == pytest.approx(want, rel=1e-9)


def test_fid_of_samples_near_zero_for_same_distribution_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4000, 8, generator=g), torch.randn(4000, 8, generator=g)
    same = fid(a, b)
    shifted = [fid(a, b + s) for s in (0.5, 1.0, 2.0)]
    assert same < 0.05
    assert shifted == sorted(shifted) and shifted[0] == pytest.approx(8 * 0.25, rel=0.1)
    with pytest.raises(ValueError, match="same d"):
        fid(a, b[:, :4])


def test_kid_unbiased_near_zero_and_positive_for_different_sets():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(300, 8, generator=g), torch.randn(300, 8, generator=g)
    assert abs(kid(a, b)) < 0.05
    assert kid(a, b + 1.0) > 0.5


def test_inception_score_extremes():
    sharp_varied = torch.eye(10).repeat(5, 1)            # each class, confidently
    assert inception_score(sharp_varied) == pytest.approx(10.0, rel=1e-6)
    assert inception_score(torch.full((50, 10), 0.1)) == pytest.approx(1.0)
    one_class = torch.zeros(50, 10)
    one_class[:, 3] = 1
    assert inception_score(one_class) == pytest.approx(1.0)


def test_precision_recall_detect_missing_modes_and_off_manifold_samples():
    g = torch.Generator().manual_seed(2)
    real = torch.cat([torch.randn(200, 2, generator=g) * 0.1 + torch.tensor([4.0 * i, 0]) for i in range(4)])
    half_modes = real[:400] + 0.01 * torch.randn(400, 2, generator=g)         # covers 2 of 4 modes
    p, r = precision_recall(real, half_modes)
    assert p > 0.95 and 0.4 < r < 0.6
    off = torch.randn(400, 2, generator=g) * 0.1 + torch.tensor([2.0, 5.0])   # nowhere near the data
    p, r = precision_recall(real, off)
    assert p < 0.05 and r < 0.05
