"""The fast decode path computes the plain model: same logits (fp32), same greedy tokens."""
from __future__ import annotations

import pytest
import torch

from deepatlas.generation.decode import generate
from deepatlas.generation.fast_decode import FastLlama, fuse_linears, greedy
from deepatlas.models.llama import Llama, LlamaConfig
from deepatlas.quant.linear import compact_model


def tiny(seed: int = 0, **kw) -> Llama:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=300, dim=64, n_layer=2, n_head=4, n_kv_head=2, ffn_dim=128, context_length=128,
                      tie_embeddings=False, **kw)
    return Llama(cfg).eval()


def ref_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]))[0]                    # (T, V)


def test_prefill_and_extend_equal_the_model():
    m = tiny()
    f = FastLlama(m, n_slots=2, max_len=64)
    ids = [5, 7, 9, 11, 13, 17]
    torch.testing.assert_close(f.prefill(1, ids), ref_logits(m, ids)[-1], atol=1e-4, rtol=1e-4)
    f.prefill(0, ids[:2])
    torch.testing.assert_close(f.extend(0, ids[2:]), ref_logits(m, ids)[2:], atol=1e-4, rtol=1e-4)
    assert f.cache.lengths[:2] == [6, 6]


def test_batched_step_rows_of_different_lengths():
    m = tiny(1)
    f = FastLlama(m, n_slots=4, max_len=64)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8], [9], [10, 11]]
    for slot, p in enumerate(prompts):
        f.prefill(slot, p)
    nxt = [3, 4, 5, 6]
    got = f.step(nxt)                                           # (4, V)
    for r, p in enumerate(prompts):
        torch.testing.assert_close(got[r], ref_logits(m, p + [nxt[r]])[-1], atol=1e-4, rtol=1e-4)
    f.cache.move(3, 1)                                          # row 1 left: row 3 takes its slot
    got = f.step([7, 8, 9])
    for r, p in [(0, prompts[0] + [3, 7]), (1, prompts[3] + [6, 8]), (2, prompts[2] + [5, 9])]:
        torch.testing.assert_close(got[r], ref_logits(m, p)[-1], atol=1e-4, rtol=1e-4)


def test_greedy_equals_plain_generate():
    m = tiny(2)
    f = FastLlama(m, max_len=64)
    for p in ([1, 2, 3], [42] * 9):
        assert greedy(f, p, 20) == generate(m, [p], 20)[0]


@pytest.mark.parametrize("weights,dim", [("int4", 128), ("int4", 64), ("int8", 64)])
def test_fused_quantized_projections_equal_the_separate_ones(weights, dim):
    """dim 128: k, v have 64 rows, whole int4 row blocks, fused; dim 64: 32 rows, called one by one."""
    torch.manual_seed(3)
    m = compact_model(Llama(LlamaConfig(vocab_size=64, dim=dim, n_layer=1, n_head=4, n_kv_head=2,
                                        ffn_dim=128, tie_embeddings=False)), weights)
    a = m.blocks[0].self_attn
    fused, dtype = fuse_linears([a.q_proj, a.k_proj, a.v_proj])
    assert dtype == torch.bfloat16
    x = torch.randn(3, dim)
    want = torch.cat([a.q_proj(x), a.k_proj(x), a.v_proj(x)], dim=-1)   # each kernel alone
    torch.testing.assert_close(fused(x.bfloat16()).float(), want, atol=0, rtol=0)


def test_bad_use_is_a_clear_error():
    f = FastLlama(tiny(), n_slots=1, max_len=8)
    with pytest.raises(ValueError, match="max_len"):
        f.prefill(0, list(range(9)))
    with pytest.raises(ValueError, match="slot 3"):
        f.prefill(3, [1])
    with pytest.raises(ValueError, match="exceeds the model's context"):
        FastLlama(tiny(), max_len=4096)
