"""L10 smollm2-yarn quick run: inside the trained context YaRN (s=2) costs SmolLM2 little loss."""
import pytest

from deepatlas.quant.weights import INSTALL_HINT, smollm2_path


@pytest.mark.skipif(smollm2_path() is None, reason=f"SmolLM2 GGUF absent: {INSTALL_HINT}")
def test_l10_smollm2_yarn_quick_holds(run_quick):
    s = run_quick("smollm2-yarn")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["trained_context"] == 8192 and m["eval_len"] == 2048
    assert abs(m["in_cost_yarn2"]) <= 0.1
    assert abs(m["bf16_nll_diff"]) < 0.02          # bf16 autocast ≈ fp32
    assert 10 < m["in_ppl_plain"] < 100            # Austen under a 135M model
    assert "rise_plain" not in m                    # quick stays inside the trained context
