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


def test_page_bpe_tokenizer_and_llama_equal_ours(tmp_path):
    """A byte-level BPE (the "smollm" pre-tokeniser, a ChatML special token) tokenizes in the page as
    text/bpe.py does, and a random-weight Llama (RoPE, GQA) generates PyTorch's greedy tokens."""
    from deepatlas.deploy.onnx import export_decoder, past_shape
    from deepatlas.deploy.web import page_logits, unicode_class_mismatch
    from deepatlas.models.llama import Llama, LlamaConfig
    from deepatlas.text.bpe import ByteLevelBPE

    bpe = ByteLevelBPE.train(["The cat sat on the mat. 2026 cafés, naïve, 中文.\n" * 10, "the then these 314"], 320,
                             special_tokens=["<|im_end|>"], pretokenizer="smollm")
    torch.manual_seed(0)
    llama = Llama(LlamaConfig(vocab_size=len(bpe), dim=32, n_layer=2, n_head=4, n_kv_head=2, ffn_dim=64,
                              context_length=128)).eval()
    texts = ["The  cat\tsat\n\n", "digits 1234567 and 3.14", "café 中文 🤗 ÿ\u00a0\u3000\u0085\ufeff", "a<|im_end|>b don't",
             "   "]
    site = write_site(tmp_path / "site", gpt={"model": export_decoder(llama, tmp_path / "llama.onnx"), "bpe": bpe,
                                              **past_shape(llama), "prompt": "The cat", "new_tokens": 8,
                                              "check_texts": texts, "class_check_up_to": 0x3100})
    result = run_in_chromium(site, query="?prompt=caf%C3%A9%202026%20")
    assert result["console_errors"] == []
    assert [c["ids"] for c in result["checks"]] == [bpe.encode(t) for t in texts]
    assert [c["text"] for c in result["checks"]] == [bpe.decode(bpe.encode(t)) for t in texts]
    assert unicode_class_mismatch(result["classes"], 0x3100) == {"L": 0, "N": 0, "s": 0}
    gen, prompt = result["generation"], bpe.encode("café 2026 ")
    assert gen["prompt_ids"] == prompt
    tokens, logits = greedy_torch(llama, prompt, 8)
    assert gen["tokens"] == tokens and gen["text"] == "café 2026 " + bpe.decode(tokens)
    assert max(np.abs(a - b).max() for a, b in zip(page_logits(gen), logits)) < 1e-4
    assert gen["decode_tokens_per_s"] > 0
