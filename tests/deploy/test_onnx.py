"""S5: the ONNX graphs run by onnxruntime equal PyTorch (random-weight models, fp32)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'deepatlas[reference]'")

from deepatlas.deploy.onnx import (GPTWithPast, classify, export_classifier, export_decoder,  # noqa: E402
                                   export_gpt, greedy_onnx, greedy_torch, past_shape, quantize_int8, session)
from deepatlas.foundations.mlp import MLP  # noqa: E402
from deepatlas.models.gpt import GPT, GPTConfig  # noqa: E402

ATOL = 1e-5


@pytest.fixture(scope="module")
def gpt_onnx(tmp_path_factory):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=50, block_size=48, n_layer=2, n_head=4, n_embd=64)).eval()
    path = export_gpt(gpt, tmp_path_factory.mktemp("onnx") / "gpt.onnx")
    return gpt, path, session(path)


def test_classifier_equals_torch_at_any_batch_size(tmp_path):
    torch.manual_seed(0)
    mlp = MLP([784, 64, 10]).eval()
    sess = session(export_classifier(mlp, torch.randn(2, 784), tmp_path / "mlp.onnx"))
    for n in (1, 7):
        x = torch.randn(n, 784)
        np.testing.assert_allclose(classify(sess, x.numpy()), mlp(x).detach().numpy(), atol=ATOL, rtol=0)


def test_gpt_prefill_and_cached_steps_equal_torch(gpt_onnx):
    gpt, _, sess = gpt_onnx
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        want = gpt(ids).numpy()                                     # no cache: the whole sequence
        cache = gpt.new_cache(2, 9)
        gpt(ids, cache=cache)                                       # our KVCache after 9 positions
    empty = np.zeros((2, 2, 4, 0, 16), np.float32)
    logits, k, v = sess.run(None, {"ids": ids.numpy(), "past_k": empty, "past_v": empty})
    np.testing.assert_allclose(logits, want, atol=ATOL, rtol=0)
    # the explicit cache holds what our KVCache holds, layer by layer
    np.testing.assert_allclose(k, torch.stack([t[:, :, :9] for t in cache.k]).numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(v, torch.stack([t[:, :, :9] for t in cache.v]).numpy(), atol=ATOL, rtol=0)
    # 5 positions, then 3, then 1 through the cache = the 9 at once
    parts, past_k, past_v = [], empty, empty
    for a, b in ((0, 5), (5, 8), (8, 9)):
        out, past_k, past_v = sess.run(None, {"ids": ids[:, a:b].numpy(), "past_k": past_k, "past_v": past_v})
        parts.append(out)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), want, atol=ATOL, rtol=0)


def test_gpt_with_past_is_the_model_itself(gpt_onnx):
    gpt, _, _ = gpt_onnx
    ids = torch.randint(0, 50, (1, 6))
    with torch.no_grad():
        logits, k, _ = GPTWithPast(gpt)(ids, *GPTWithPast(gpt).empty_past(1))
        torch.testing.assert_close(logits, gpt(ids), atol=ATOL, rtol=0)
    assert k.shape == (2, 1, 4, 6, 16)


def test_greedy_text_identical_and_int8_smaller(gpt_onnx, tmp_path):
    gpt, path, sess = gpt_onnx
    prompt = [3, 1, 4, 1, 5]
    tokens, logits = greedy_onnx(sess, prompt, 30, n_layer=2, n_head=4, head_dim=16)
    want_tokens, want_logits = greedy_torch(gpt, prompt, 30)
    assert tokens == want_tokens
    assert max(np.abs(a - b).max() for a, b in zip(logits, want_logits)) < ATOL
    q = quantize_int8(path, tmp_path / "gpt.int8.onnx")
    assert q.stat().st_size < 0.6 * path.stat().st_size
    q_tokens, q_logits = greedy_onnx(session(q), prompt, 5, n_layer=2, n_head=4, head_dim=16)
    err = np.abs(q_logits[0] - want_logits[0]).max()
    assert 0 < err < 0.1 * np.abs(want_logits[0]).max()             # quantised: close, not equal


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        session(tmp_path / "nothing.onnx")


def test_llama_with_gqa_and_rope_equals_torch(tmp_path):
    """Our Llama (RoPE, GQA 4 query / 2 key-value heads, RMSNorm, tied head): prefill, then the
    cache a few positions at a time, then greedy tokens — all equal PyTorch."""
    from deepatlas.models.llama import Llama, LlamaConfig

    torch.manual_seed(0)
    llama = Llama(LlamaConfig(vocab_size=80, dim=64, n_layer=2, n_head=4, n_kv_head=2, ffn_dim=96,
                              context_length=64)).eval()
    shape = past_shape(llama)
    assert shape == {"n_layer": 2, "n_head": 2, "head_dim": 16}          # the cache keeps the kv heads only
    sess = session(export_decoder(llama, tmp_path / "llama.onnx"))
    ids = torch.randint(0, 80, (2, 9))
    with torch.no_grad():
        want = llama(ids).numpy()
    parts, past_k = [], np.zeros((2, 2, 2, 0, 16), np.float32)
    past_v = past_k
    for a, b in ((0, 4), (4, 8), (8, 9)):
        out, past_k, past_v = sess.run(None, {"ids": ids[:, a:b].numpy(), "past_k": past_k, "past_v": past_v})
        parts.append(out)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), want, atol=1e-4, rtol=0)
    tokens, logits = greedy_onnx(sess, [5, 7, 11], 20, **shape)
    want_tokens, want_logits = greedy_torch(llama, [5, 7, 11], 20)
    assert tokens == want_tokens
    assert max(np.abs(a - b).max() for a, b in zip(logits, want_logits)) < 1e-4
    assert all(m.fast for m in llama.modules() if hasattr(m, "fast") and type(m).__name__ == "RMSNorm")


def test_an_unknown_model_is_named():
    with pytest.raises(TypeError, match="MLP.*valid: GPT, Llama"):
        past_shape(MLP([4, 2]))
