"""S5 in a real browser: Debian's headless Chromium runs the exported models on onnxruntime-web
(WASM) and its logits, predictions and greedy tokens equal PyTorch's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'deepatlas[reference]'")
pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright "
                    "(never `playwright install`)")

from deepatlas.deploy.onnx import export_classifier, export_gpt, greedy_torch  # noqa: E402
from deepatlas.deploy.web import CHROMIUM, find_onnxruntime_web, run_in_chromium, write_site  # noqa: E402
from deepatlas.foundations.mlp import MLP  # noqa: E402
from deepatlas.models.gpt import GPT, GPTConfig  # noqa: E402

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} not installed: apt-get install -y chromium", allow_module_level=True)
if find_onnxruntime_web() is None:
    pytest.skip("onnxruntime-web not in the cache: python -c 'from deepatlas.deploy.web import "
                "fetch_onnxruntime_web as f; f()' (npm pack, once)", allow_module_level=True)


def test_page_outputs_equal_torch(tmp_path):
    torch.manual_seed(0)
    vocab = [chr(c) for c in range(32, 127)]
    gpt = GPT(GPTConfig(vocab_size=len(vocab), block_size=64, n_layer=2, n_head=4, n_embd=32)).eval()
    mlp = MLP([784, 32, 10]).eval()
    x = torch.randn(5, 784)
    site = write_site(tmp_path / "site",
                      classifier={"model": export_classifier(mlp, x[:1], tmp_path / "mlp.onnx"), "x": x.numpy(),
                                  "pixels": np.zeros((5, 784), np.uint8), "labels": [0, 1, 2, 3, 4],
                                  "classes": [f"class {i}" for i in range(10)]},
                      gpt={"model": export_gpt(gpt, tmp_path / "gpt.onnx"), "vocab": vocab, "n_layer": 2,
                           "n_head": 4, "head_dim": 8, "prompt": "Emma ", "new_tokens": 12})
    shot = tmp_path / "page.png"
    result = run_in_chromium(site, screenshot=shot, query="?prompt=Mr.%20Knightley")
    assert result["console_errors"] == []
    with torch.no_grad():
        want = mlp(x).numpy()
    np.testing.assert_allclose(np.array(result["classifier"]["logits"]).reshape(5, 10), want, atol=1e-5, rtol=0)
    assert result["classifier"]["predictions"] == want.argmax(1).tolist()
    gen = result["generation"]
    prompt = [vocab.index(c) for c in "Mr. Knightley"]          # the page's tokenizer = ours
    assert gen["prompt_ids"] == prompt
    tokens, logits = greedy_torch(gpt, prompt, 12)
    assert gen["tokens"] == tokens and gen["text"] == "Mr. Knightley" + "".join(vocab[t] for t in tokens)
    assert max(np.abs(np.array(a) - b).max() for a, b in zip(gen["logits"], logits)) < 1e-5
    assert gen["tokens_per_s"] > 0 and shot.stat().st_size > 10_000
