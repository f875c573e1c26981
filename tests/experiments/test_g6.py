"""G6 quick run: exact flow log-det, flow vs VAE bits/dim, Langevin on a known mixture, CD-trained EBMs."""
from __future__ import annotations


def test_g6_quick_holds(run_quick):
    s = run_quick("flows-ebm")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["logdet_vs_autograd"] < 1e-6
    assert m["flow_bits_per_dim"] < m["vae_elbo_bits_per_dim"]
    assert m["vae_iw_bits_per_dim"] < m["vae_elbo_bits_per_dim"]      # the IW bound is tighter than the ELBO
    assert m["langevin_tv"] < 3 * m["exact_samples_tv"] and m["ring_modes_fresh"] == 8
