"""A5 quick run: tiled attention is exact, its memory grows linearly, measured caches = formula."""
from __future__ import annotations


def test_a5_quick_holds(run_quick):
    s = run_quick("efficient-attention")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["max_abs_error"] <= 1e-4
    assert m["tiled_memory_slope"] <= 1.2 and m["plain_memory_slope"] >= 1.8
    assert m["memory_ratio_at_max_N"] <= 0.1
    assert all(c["measured_bytes_per_token"] == c["formula_bytes_per_token"] for c in m["kv_cache_measured_fp32"])
    published = {r["model"]: r["bytes_per_token"] for r in m["kv_cache_published_bf16"]}
    assert published == {"Llama-2-70B": 327680, "Mistral-7B": 131072, "DeepSeek-V3": 70272}
