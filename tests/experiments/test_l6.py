"""L6 quick run: HF parity, bias balancing evens the load without hurting the loss, MTP drafts."""
from __future__ import annotations

import pytest


def test_l6_quick_holds(run_quick):
    pytest.importorskip("transformers", reason="transformers not installed: pip install -e '.[reference]'")
    s = run_quick("deepseek-moe")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["hf_max_abs_diff"] <= 1e-4 and m["hf_absorbed_max_abs_diff"] <= 1e-4
    assert m["max_vio_bias"] <= 0.5 * m["max_vio_none"]
    assert m["val_loss_bias"] <= m["val_loss_none"] + 0.05
    assert m["mtp_acceptance"] >= 0.3
    assert m["cache_bytes_per_token_mla"] < m["cache_bytes_per_token_mha"]
