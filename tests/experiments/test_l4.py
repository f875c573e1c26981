"""L4 quick run: the real all-MiniLM-L6-v2 in our BERT equals transformers and finds paragraphs."""
from __future__ import annotations

import pytest

from deepatlas.models.sentence_encoder import minilm_dir


def test_l4_quick_holds(run_quick):
    try:
        minilm_dir()
    except FileNotFoundError as err:
        pytest.skip(f"all-MiniLM-L6-v2 not installed: {err}")
    pytest.importorskip("transformers")
    s = run_quick("minilm-search")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["ids_equal"] and m["embedding_max_abs_diff"] <= 1e-5
    assert m["paraphrase_nearest"] == 1.0
    assert m["recall_at_1"] >= 10 * m["chance_at_1"]
    assert set(m["queries"]) and "recall_at_k.png" in s["plots"]
