"""L3 quick run: cached decoding equals recomputation token for token, and is faster."""
from __future__ import annotations


def test_l3_quick_holds(run_quick):
    s = run_quick("decoding")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert all(v for k, v in m.items() if k.startswith("identical_")), m
    assert m["cache_speedup"] > 1.0
