"""A2 quick run: without attention the GRU seq2seq fails on long inputs; Bahdanau attention does not."""
from __future__ import annotations


def test_a2_quick_holds(run_quick):
    s = run_quick("seq2seq-attention")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["bahdanau_acc_long"] >= 0.8
    assert m["bottleneck_acc_short"] - m["bottleneck_acc_long"] >= 0.2   # the bottleneck degrades
    assert m["bahdanau_acc_long"] - m["none_acc_long"] >= 0.3
    assert "accuracy_vs_length.png" in s["plots"]
