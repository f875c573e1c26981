"""Positions: sinusoidal closed form, RoPE's relative-offset property, RoPE equals HF Llama's."""
import math

import pytest
import torch

from deepatlas.nn.positions import (LearnedPositions, RotaryEmbedding, SinusoidalPositions,
                                    sinusoidal_table)

close = torch.testing.assert_close


def test_sinusoidal_closed_form():
    d = 6
    table = sinusoidal_table(50, d)
    for pos in (0, 1, 7, 49):
        for i in range(d // 2):
            w = 1.0 / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos * w), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos * w), abs=1e-6)
    close(SinusoidalPositions(d, 50)(3, offset=5), table[5:8])


def test_learned_positions_slice_and_bounds():
    pe = LearnedPositions(4, 10)
    close(pe(3, offset=2), pe.weight[2:5])
    with pytest.raises(ValueError, match="exceed max_len 10"):
        pe(5, offset=6)


def test_rope_preserves_norm_and_depends_only_on_offset():
    torch.manual_seed(0)
    rope = RotaryEmbedding(16, max_len=8, theta=10000.0)  # cache grows past max_len on demand
    q, k = torch.randn(1, 1, 1, 16, dtype=torch.float64), torch.randn(1, 1, 1, 16, dtype=torch.float64)
    rope = rope.double()

    def dot(m: int, n: int) -> float:
        qm, _ = rope(q, q, offset=m)
        _, kn = rope(k, k, offset=n)
        return (qm * kn).sum().item()

    qm, _ = rope(q, q, offset=37)
    close(qm.norm(), q.norm())
    # ⟨R_m q, R_n k⟩ = ⟨q, R_{n-m} k⟩: same offset n - m, same score
    for m, n in ((0, 3), (5, 8), (40, 43)):
        assert dot(m, n) == pytest.approx(dot(0, 3), rel=1e-9, abs=1e-9)
    assert abs(dot(0, 3) - dot(0, 4)) > 1e-6  # and it does change with the offset


def test_rope_equals_hf_llama():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    torch.manual_seed(1)
    B, H, T, hd, theta = 2, 3, 6, 8, 500000.0
    cfg = LlamaConfig(hidden_size=H * hd, num_attention_heads=H, max_position_embeddings=64,
                      rope_parameters={"rope_type": "default", "rope_theta": theta})
    hf_rope = LlamaRotaryEmbedding(cfg)
    q, k = torch.randn(B, H, T, hd), torch.randn(B, H, T, hd)
    ours = RotaryEmbedding(hd, max_len=64, theta=theta)
    for offset in (0, 11):
        pos = torch.arange(offset, offset + T)[None].expand(B, T)
        cos, sin = hf_rope(q, pos)
        hq, hk = apply_rotary_pos_emb(q, k, cos, sin)
        oq, ok = ours(q, k, offset=offset)
        close(oq, hq)
        close(ok, hk)
    # per-row position tensors (left-padded batches)
    pos = torch.tensor([[0, 1, 2, 3, 4, 5], [3, 4, 5, 6, 7, 8]])
    cos, sin = hf_rope(q, pos)
    hq, hk = apply_rotary_pos_emb(q, k, cos, sin)
    oq, ok = ours(q, k, offset=pos)
    close(oq, hq)
    close(ok, hk)
