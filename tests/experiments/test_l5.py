import pytest

from deepatlas.quant.weights import INSTALL_HINT, smollm2_path


@pytest.mark.skipif(smollm2_path() is None, reason=f"SmolLM2 GGUF absent: {INSTALL_HINT}")
def test_l5_quick_holds(run_quick):
    s = run_quick("llama-smollm2")
    assert s["held"], s["metrics"]
    assert s["metrics"]["greedy_equal"] == s["metrics"]["prompts"] == 2
    assert s["metrics"]["max_abs_logit_diff"] < 1e-3
