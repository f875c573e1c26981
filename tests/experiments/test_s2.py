import pytest

from deepatlas.quant.weights import INSTALL_HINT, smollm2_path


@pytest.mark.skipif(smollm2_path() is None, reason=f"SmolLM2 GGUF absent: {INSTALL_HINT}")
def test_s2_quick_holds(run_quick):
    s = run_quick("agent-tools")
    m = s["metrics"]
    assert s["held"], m
    assert m["valid_constrained"] == 1.0 and m["success_tools"] > m["success_alone"]
