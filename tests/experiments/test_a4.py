"""A4 quick run: our skip-gram's analogy accuracy is gensim's (same tokens, same settings), far
above bag-of-words vectors, and names' neighbours are names."""
from __future__ import annotations

import pytest


def test_a4_quick_holds(run_quick):
    pytest.importorskip("gensim")
    s = run_quick("word2vec-analogies")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["questions"] >= 40
    assert abs(m["ours_sg_accuracy"] - m["gensim_sg_accuracy"]) <= 0.05
    assert m["ours_sg_accuracy"] >= m["bow_accuracy"] + 0.05
    assert m["name_neighbour_share"] >= 0.5
    assert m["sg_time_ratio"] > 0 and "analogies.png" in s["plots"]
