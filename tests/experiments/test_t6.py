"""T6 quick run: the distilled half-depth student keeps the teacher's accuracy and beats hard labels."""
from __future__ import annotations


def test_t6_distill_quick_holds(run_quick):
    s = run_quick("distill")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    v = m["variants"]
    assert 0.4 < m["student_param_fraction"] < 0.6
    assert abs(v["magnitude 50%"]["sparsity"] - 0.5) < 1e-3
    assert v["structured"]["params"] < 0.7 * v["teacher"]["params"]
