"""S5 quick run: ONNX (onnxruntime) and the page in headless Chromium equal PyTorch; int8 costs
little and makes the files far smaller."""
from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'deepatlas[reference]'")
pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright")

from deepatlas.deploy.web import CHROMIUM, find_onnxruntime_web  # noqa: E402


def test_s5_quick_holds(run_quick):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed: apt-get install -y chromium")
    if find_onnxruntime_web() is None:
        pytest.skip("onnxruntime-web not in the cache: python -c 'from deepatlas.deploy.web import "
                    "fetch_onnxruntime_web as f; f()' (npm pack, once)")
    s = run_quick("onnx-browser")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["gpt_onnx_greedy_identical"] and m["browser_greedy_identical"] and m["browser_predictions_identical"]
    assert m["gpt_onnx_max_logit_diff"] <= 1e-4 and m["browser_gpt_max_logit_diff"] <= 1e-4
    assert m["gpt_int8_size_ratio"] <= 0.4 and m["cls_int8_size_ratio"] <= 0.4
    assert "page.png" in s["plots"]
