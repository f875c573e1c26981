"""A linear autoencoder reaches PCA's reconstruction error (Baldi & Hornik 1989); DAE corruption; errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepatlas.data.digits import load_digits_tensors
from deepatlas.models.autoencoder import Autoencoder, corrupt, pca_reconstruction, train_autoencoder


def test_linear_autoencoder_reaches_pca_error():
    torch.set_num_threads(1)
    x, _, x_test, _ = load_digits_tensors()
    k = 6
    pca_err = F.mse_loss(pca_reconstruction(x, x, k), x).item()
    ae = Autoencoder(64, k, hidden=(), linear=True)
    train_autoencoder(ae, x, steps=3000, batch=256, lr=1e-2)
    with torch.no_grad():
        ae_err = F.mse_loss(ae(x), x).item()
    # never below the optimum (beyond float noise), and within 3% of it
    assert pca_err * 0.999 < ae_err < pca_err * 1.03, (ae_err, pca_err)
    # PCA's error falls with k, to 0 at k = d
    errs = [F.mse_loss(pca_reconstruction(x, x_test, j), x_test).item() for j in (1, 4, 16, 64)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-10


def test_corrupt_adds_clipped_gaussian_noise():
    x = torch.full((20000, 1), 0.5)
    y = corrupt(x, 0.1, torch.Generator().manual_seed(0))
    assert abs(y.std().item() - 0.1) < 0.005 and y.min() >= 0 and y.max() <= 1
    assert torch.equal(corrupt(x, 0.0), x)
    with pytest.raises(ValueError, match="≥ 0"):
        corrupt(x, -1.0)


def test_bad_bottleneck_is_named():
    with pytest.raises(ValueError, match="valid: 1..784"):
        Autoencoder(784, 0)
