import pytest

from deepatlas.quant.weights import INSTALL_HINT, smollm2_path


@pytest.mark.skipif(smollm2_path() is None, reason=f"SmolLM2 GGUF absent: {INSTALL_HINT}")
def test_s1_quick_holds(run_quick):
    s = run_quick("rag-citations")
    m = s["metrics"]
    assert s["held"], m
    assert m["rag_accuracy"] > m["closed_accuracy"] and m["recall5_hybrid_test"] >= 0.8
    assert m["reload_rebuilt"] == 0                       # the second open reused the index on disk
    assert m["hnsw_recall10_vs_exact"] > 0.9 and m["ivf_recall10_vs_exact"] > 0.9
