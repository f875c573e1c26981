"""DeepSeek-V3: logits equal HF DeepseekV3ForCausalLM on a tiny random config; MLA's absorbed
form and its latent cache give the plain outputs; MTP's loss is the eq.-25 sum."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepatlas.models.deepseek import DeepSeek, DeepSeekConfig, deepseek_loss, from_hf

transformers = pytest.importorskip("transformers", reason="transformers not installed: pip install transformers")


def _hf_tiny(q_lora_rank=16, interleave=True):
    cfg = transformers.DeepseekV3Config(
        vocab_size=97, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1, n_routed_experts=8,
        num_experts_per_tok=2, n_group=2, topk_group=1, routed_scaling_factor=2.5, first_k_dense_replace=1,
        q_lora_rank=q_lora_rank, kv_lora_rank=12, qk_nope_head_dim=8, qk_rope_head_dim=4, head_dim=4,
        v_head_dim=6, max_position_embeddings=64, rope_interleave=interleave, attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.DeepseekV3ForCausalLM(cfg).eval()
    with torch.no_grad():   # non-zero biases and norm gains, so a mismatch in either would show
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
        for name, b in hf.named_buffers():
            if "e_score_correction_bias" in name:
                b.copy_(0.05 * torch.randn_like(b))
    return hf


@pytest.mark.parametrize("q_lora_rank,interleave", [(16, True), (None, False)])
def test_logits_equal_hf_deepseek_v3(q_lora_rank, interleave):
    hf = _hf_tiny(q_lora_rank, interleave)
    ours = from_hf(hf).eval()
    idx = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(idx).logits
        torch.testing.assert_close(ours(idx), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(idx, absorbed=True), ref, rtol=1e-5, atol=1e-5)


def test_latent_cache_decoding_equals_full_forward():
    ours = from_hf(_hf_tiny()).eval()
    idx = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = ours(idx)
        for absorbed in (False, True):
            cache = ours.new_cache(2, 16)
            steps = [ours(idx[:, :5], cache, absorbed)] + [ours(idx[:, t:t + 1], cache, absorbed)
                                                           for t in range(5, 9)]
            torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    # the cache holds r + d_r numbers per token and layer
    assert cache.nbytes() == 3 * 2 * 16 * (12 + 4) * 4


def test_mtp_loss_is_main_plus_weighted_depth_losses():
    torch.manual_seed(0)
    cfg = DeepSeekConfig(vocab_size=20, d_model=16, n_layer=2, n_head=2, q_lora_rank=None, kv_lora_rank=8,
                         qk_nope_dim=4, qk_rope_dim=4, v_dim=4, d_ff=24, moe_d_ff=8, n_routed=4, n_shared=1,
                         top_k=2, n_group=1, topk_group=1, routed_scale=1.0, first_k_dense=1, max_len=32,
                         n_mtp=2)
    model = DeepSeek(cfg)
    x = torch.randint(0, 20, (3, 10))
    y = torch.randint(0, 20, (3, 10))
    h = model.hidden(x)
    main = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    d1, d2 = model.mtp_logits(h, x)
    assert d1.shape == (3, 9, 20) and d2.shape == (3, 8, 20)
    expected = main + 0.5 * (F.cross_entropy(d1.flatten(0, 1), y[:, 1:].flatten())
                             + F.cross_entropy(d2.flatten(0, 1), y[:, 2:].flatten())) / 2
    torch.testing.assert_close(deepseek_loss(model, (x, y), mtp_weight=0.5), expected)
    # depth 1 at position i reads token i+1: changing the last token changes d1's last row only
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % 20
    e1 = model.mtp_logits(model.hidden(x2), x2)[0]
    torch.testing.assert_close(e1[:, :-1], d1[:, :-1])
    assert not torch.allclose(e1[:, -1], d1[:, -1])
