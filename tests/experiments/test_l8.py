import pytest

from deepatlas.quant.weights import INSTALL_HINT, smollm2_path


@pytest.mark.skipif(smollm2_path() is None, reason=f"SmolLM2 GGUF absent: {INSTALL_HINT}")
def test_l8_quick_holds(run_quick):
    s = run_quick("prompting")
    m = s["metrics"]
    assert s["held"], m
    assert m["acc_k4"] > m["acc_k0"] and 0 <= m["acc_cot"] <= 1 and "acc_sc3" in m
