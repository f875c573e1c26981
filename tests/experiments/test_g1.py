"""G1 quick run: reconstruction error falls with the bottleneck, beats PCA at small k; the DAE denoises."""
from __future__ import annotations


def test_g1_quick_holds(run_quick):
    s = run_quick("autoencoder")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["ae_mse"][0] > m["ae_mse"][-1]
    assert m["ae_mse_k2"] < m["pca_mse_k2"]
    assert all(d < n for d, n in zip(m["dae_mse"], m["noisy_mse"]))
