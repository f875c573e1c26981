"""L9 quick run: the three architecture × objective pairs all transfer zero-shot above chance."""
from pathlib import Path


def test_l9_arch_objective_quick_holds(run_quick):
    s = run_quick("arch-objective")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    for arch in ("causal-full-lm", "prefix-lm", "encdec-span"):
        assert m[f"zero_shot_fill_{arch}"] >= 0.35
        assert 0.0 <= m[f"finetuned_{arch}"] <= 1.0
    assert m["params_causal-full-lm"] == m["params_prefix-lm"]
    assert abs(m["params_encdec-span"] / m["params_causal-full-lm"] - 1) < 0.3   # equal size ±30%
    assert m["best_zero_shot"] in ("causal-full-lm", "prefix-lm", "encdec-span")
    assert (Path(s["dir"]) / "table.md").read_text().count("|") > 20
