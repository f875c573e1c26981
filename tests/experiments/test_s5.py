"""S5 quick run: ONNX (onnxruntime) and the page in headless Chromium equal PyTorch; int8 costs
little and makes the files far smaller."""
from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'deepatlas[reference]'")
pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright")

from deepatlas.deploy.web import CHROMIUM, find_onnxruntime_web  # noqa: E402


def _need_browser() -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed: apt-get install -y chromium")
    if find_onnxruntime_web() is None:
        pytest.skip("onnxruntime-web not in the cache: python -c 'from deepatlas.deploy.web import "
                    "fetch_onnxruntime_web as f; f()' (npm pack, once)")


def test_s5_quick_holds(run_quick):
    _need_browser()
    s = run_quick("onnx-browser")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["gpt_onnx_greedy_identical"] and m["browser_greedy_identical"] and m["browser_predictions_identical"]
    assert m["gpt_onnx_max_logit_diff"] <= 1e-4 and m["browser_gpt_max_logit_diff"] <= 1e-4
    assert m["gpt_int8_size_ratio"] <= 0.4 and m["cls_int8_size_ratio"] <= 0.4
    assert "page.png" in s["plots"]


def test_s5_smollm2_web_quick_holds(run_quick):
    """Quick: SmolLM2's real tokenizer in the page, a 2-layer random-weight Llama for the model
    (the 135M model is the full setting)."""
    from deepatlas.quant.weights import INSTALL_HINT, smollm2_path

    _need_browser()
    if smollm2_path() is None:
        pytest.skip(f"SmolLM2 GGUF absent (its tokenizer is the one tested): {INSTALL_HINT}")
    s = run_quick("smollm2-web")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["tokenizer_texts_equal"] == m["tokenizer_texts"] == 8 and m["tokenizer_class_mismatches"] == 0
    assert m["onnx_greedy_identical"] and m["browser_greedy_identical"] and m["browser_text_equal"]
    assert max(m["onnx_max_logit_diff"], m["browser_max_logit_diff"]) <= 2e-4
    assert m["int8_size_ratio"] <= 0.3 and m["browser_decode_tokens_per_s"] > 0
    assert "page.png" in s["plots"]
