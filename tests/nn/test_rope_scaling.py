"""RoPE scaling: PI, NTK-aware, dynamic NTK and YaRN against their formulas and HF's init functions."""
import math

import pytest
import torch

from deepatlas.nn.rope_scaling import (dynamic_ntk_inv_freq, linear_inv_freq, ntk_inv_freq,
                                       rope_inv_freq, scaled_rope, yarn_attention_factor,
                                       yarn_inv_freq)

HD, THETA, L = 64, 10000.0, 2048


def _hf_config(rope_parameters, max_pos=L):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=HD * 4, num_attention_heads=4, max_position_embeddings=max_pos,
                       rope_parameters={"rope_theta": THETA, **rope_parameters})


def test_linear_interpolation_formula_and_hf():
    from transformers.modeling_rope_utils import _compute_linear_scaling_rope_parameters

    s = 4.0
    ours = linear_inv_freq(HD, THETA, s)
    torch.testing.assert_close(ours * 4000, rope_inv_freq(HD, THETA) * 1000)   # angle at m·s = angle at m
    ref, attn = _compute_linear_scaling_rope_parameters(_hf_config({"rope_type": "linear", "factor": s}))
    torch.testing.assert_close(ours, ref)
    assert attn == 1.0


def test_ntk_keeps_the_highest_and_divides_the_lowest_frequency():
    s = 8.0
    ours, base = ntk_inv_freq(HD, THETA, s), rope_inv_freq(HD, THETA)
    assert ours[0].item() == 1.0 == base[0].item()
    assert ours[-1].item() == pytest.approx(base[-1].item() / s, rel=1e-5)


def test_dynamic_ntk_equals_hf():
    from transformers.modeling_rope_utils import _compute_dynamic_ntk_parameters

    cfg = _hf_config({"rope_type": "dynamic", "factor": 2.0})
    for seq_len in (1000, L, 3000, 8192):
        ref, _ = _compute_dynamic_ntk_parameters(cfg, seq_len=seq_len)
        torch.testing.assert_close(dynamic_ntk_inv_freq(HD, THETA, 2.0, seq_len, L), ref)
    # at T = 1.5 L: s_T = 2 · 1.5 − 1 = 2, the static NTK base for s = 2; at T ≤ L: plain RoPE
    torch.testing.assert_close(dynamic_ntk_inv_freq(HD, THETA, 2.0, int(L * 1.5), L), ntk_inv_freq(HD, THETA, 2.0))
    torch.testing.assert_close(dynamic_ntk_inv_freq(HD, THETA, 2.0, L // 2, L), rope_inv_freq(HD, THETA))


@pytest.mark.parametrize("factor", [2.0, 4.0, 16.0])
def test_yarn_equals_hf_and_its_regions(factor):
    from transformers.modeling_rope_utils import _compute_yarn_parameters

    cfg = _hf_config({"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": L},
                     max_pos=int(L * factor))
    ref, ref_attn = _compute_yarn_parameters(cfg)
    ours, attn = yarn_inv_freq(HD, THETA, factor, L)
    torch.testing.assert_close(ours, ref)
    assert attn == pytest.approx(ref_attn) == pytest.approx(0.1 * math.log(factor) + 1)
    base = rope_inv_freq(HD, THETA)
    rotations = L * base / (2 * math.pi)                     # r_i over the trained length
    fast, slow = rotations > 32, rotations < 1
    torch.testing.assert_close(ours[fast], base[fast])        # γ = 1: extrapolated
    torch.testing.assert_close(ours[slow], base[slow] / factor)   # γ = 0: interpolated
    assert yarn_attention_factor(1.0) == 1.0


def test_yarn_rotary_cos_sin_equal_hf_llama():
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    cfg = _hf_config({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256}, max_pos=1024)
    hf = LlamaRotaryEmbedding(cfg)
    x = torch.randn(1, 10, HD)
    pos = torch.arange(700, 710)[None]
    cos, sin = hf(x, pos)
    ours = scaled_rope("yarn", HD, THETA, 4.0, original_max_len=256)
    c, s = ours.cos_sin(10, 700)
    torch.testing.assert_close(c, cos[0])
    torch.testing.assert_close(s, sin[0])
    q, k = torch.randn(1, 2, 10, HD), torch.randn(1, 2, 10, HD)
    rq, rk = ours(q, k, offset=700)
    assert rq.norm() / q.norm() == pytest.approx(yarn_attention_factor(4.0), rel=1e-4)   # √(1/t) on q


def test_unknown_scaling_is_named():
    with pytest.raises(ValueError, match="valid: none, linear"):
        scaled_rope("cubic", 8)
