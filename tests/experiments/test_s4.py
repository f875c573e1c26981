import pytest

from deepatlas.quant.weights import INSTALL_HINT, smollm2_path


@pytest.mark.skipif(smollm2_path() is None, reason=f"SmolLM2 GGUF absent: {INSTALL_HINT}")
def test_s4_quick_holds(run_quick):
    s = run_quick("s4-serving")
    m = s["metrics"]
    assert s["held"], (m, s.get("notes"))
    assert m["completed"] == m["requests"] == 8 and m["bad_request_status"] == 400
    assert m["max_batch"] >= 2 and 0 < m["ttft_p50_s"] < 60
