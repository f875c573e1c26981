"""G2 quick run: KL checks, ELBO ≤ IW log-likelihood, even latent walk, β trade-off."""
from __future__ import annotations


def test_g2_quick_holds(run_quick):
    s = run_quick("vae")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["kl_max_abs_vs_torch"] < 1e-4
    assert m["test_elbo"] < m["test_iw_log_likelihood"]
    assert m["kl_nats"] == sorted(m["kl_nats"], reverse=True)
