"""F7 closed forms against torch.linalg / numpy / sklearn and exact answers."""
import numpy as np
import pytest
import torch

from deepatlas.foundations.classical import (BayesianLinearRegression, add_intercept, condition_number,
                                             gaussian_map, hinge_objective, linear_svm_ovr,
                                             normal_equations, qr_least_squares, svm_decision)


def _data(n=80, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    return x, x @ w + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)


def test_least_squares_paths_equal_lstsq():
    x, y = _data()
    ref = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)
    torch.testing.assert_close(normal_equations(x, y), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(qr_least_squares(x, y), ref, rtol=1e-10, atol=1e-12)
    # the normal equations hold at the optimum: Xᵀ(Xŵ − y) = 0
    assert (x.T @ (x @ ref - y)).abs().max() < 1e-10


def test_ridge_paths_equal_numpy_and_map():
    x, y = _data(seed=1)
    lam = 3.0
    ref = np.linalg.solve(x.numpy().T @ x.numpy() + lam * np.eye(5), x.numpy().T @ y.numpy())
    np.testing.assert_allclose(normal_equations(x, y, lam).numpy(), ref, rtol=1e-10)
    np.testing.assert_allclose(qr_least_squares(x, y, lam).numpy(), ref, rtol=1e-10)
    # MAP with σ² = 1.5, τ² = 0.5 is ridge with λ = σ²/τ² = 3
    np.testing.assert_allclose(gaussian_map(x, y, 1.5, 0.5).numpy(), ref, rtol=1e-10)
    from sklearn.linear_model import Ridge
    np.testing.assert_allclose(Ridge(alpha=lam, fit_intercept=False).fit(x.numpy(), y.numpy()).coef_, ref, rtol=1e-8)


def test_condition_number_and_bad_input():
    x = torch.diag(torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64))
    assert condition_number(x) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="X \\(n, d\\)"):
        normal_equations(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="ridge"):
        qr_least_squares(torch.zeros(3, 2), torch.zeros(3), ridge=-1)


def test_bayesian_posterior_equals_ridge_and_sklearn():
    x, y = _data(seed=2)
    blr = BayesianLinearRegression(noise_var=0.04, prior_var=2.0).fit(x, y)
    torch.testing.assert_close(blr.mean, gaussian_map(x, y, 0.04, 2.0), rtol=1e-9, atol=1e-12)
    # the posterior covariance in numpy, Σ = (I/τ² + XᵀX/σ²)⁻¹, and the predictive variance σ² + xᵀΣx
    cov = np.linalg.inv(np.eye(5) / 2.0 + x.numpy().T @ x.numpy() / 0.04)
    np.testing.assert_allclose(blr.cov.numpy(), cov, rtol=1e-9)
    mean, std = blr.predict(x[:3])
    np.testing.assert_allclose(std.numpy() ** 2, 0.04 + np.einsum("nd,de,ne->n", x[:3].numpy(), cov, x[:3].numpy()),
                               rtol=1e-9)
    torch.testing.assert_close(mean, x[:3] @ blr.mean)


def test_svm_matches_linearsvc_on_separable_and_digits():
    from sklearn.svm import LinearSVC
    from deepatlas.data.digits import load_digits_tensors
    xtr, ytr, xte, _ = load_digits_tensors()
    xtr, xte = xtr.double()[:600], xte.double()
    ytr = ytr[:600]
    w = linear_svm_ovr(xtr, ytr, c=0.1, steps=2000)
    ref = LinearSVC(loss="hinge", C=0.1, intercept_scaling=1, tol=1e-8, max_iter=100000).fit(xtr.numpy(), ytr.numpy())
    agree = (svm_decision(w, xte).argmax(1).numpy() == ref.predict(xte.numpy())).mean()
    assert agree >= 0.99, agree
    # the same objective value per class (to 0.1%)
    wr = torch.tensor(np.concatenate([ref.coef_, ref.intercept_[:, None]], 1))
    xi = add_intercept(xtr)
    for k in range(10):
        yk = torch.where(ytr == k, 1.0, -1.0).double()
        ours, theirs = hinge_objective(w[k], xi, yk, 0.1), hinge_objective(wr[k], xi, yk, 0.1)
        assert ours <= theirs * 1.001 + 1e-6, (k, ours, theirs)


def test_svm_bad_input():
    with pytest.raises(ValueError, match="labels"):
        linear_svm_ovr(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
