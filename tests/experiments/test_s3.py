import pytest

from deepatlas.quant.weights import INSTALL_HINT, smollm2_path


@pytest.mark.skipif(smollm2_path() is None, reason=f"SmolLM2 GGUF absent: {INSTALL_HINT}")
def test_s3_quick_holds(run_quick):
    s = run_quick("s3-inference")
    m = s["metrics"]
    assert s["held"], (s.get("notes"), m)       # the checks first: a long message is cut at its end
    assert m["fast_speedup_int4"] > 1.0 and m["spec_lookup_fp32_acceptance"] > 0.3
    assert m["ppl_fp32"] < m["ppl_int4"] * 1.2 and m["ppl_fp32"] > 1.0
