"""GPT-2 parity with Hugging Face's GPT2LMHeadModel (tiny config, random weights, fp32)."""
from __future__ import annotations

import json

import pytest
import torch

from deepatlas.models.gpt import (GPT, GPTConfig, config_to_hf, from_hf_state_dict,
                                  from_pretrained_hf, lm_loss, preset, save_pretrained_hf,
                                  to_hf_state_dict)

transformers = pytest.importorskip("transformers")

TINY = GPTConfig(vocab_size=61, block_size=32, n_layer=2, n_head=4, n_embd=32)


def hf_tiny(seed: int = 0):
    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config_to_hf(TINY)))
    with torch.no_grad():  # HF zero-inits biases and sets LN to identity: randomise them too
        for name, p in hf.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return hf.eval()


def ids(B: int = 3, T: int = 20, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, TINY.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def test_hf_weights_give_equal_logits():
    hf = hf_tiny()
    ours = from_hf_state_dict(hf.state_dict(), TINY).eval()
    x = ids()
    torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-5, rtol=1e-5)
    ours.config.fast = False  # the plain softmax(QKᵀ/√d)V path agrees too
    torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-5, rtol=1e-5)


def test_loss_equals_hf_loss_and_gradients_match():
    hf = hf_tiny(2)
    ours = from_hf_state_dict(hf.state_dict(), TINY).eval()
    x = ids(2, 17, seed=3)
    ref = hf(x, labels=x)                                     # HF shifts the labels itself
    loss = lm_loss(ours, (x[:, :-1], x[:, 1:]))
    torch.testing.assert_close(loss, ref.loss, atol=1e-5, rtol=1e-5)
    loss.backward(), ref.loss.backward()
    torch.testing.assert_close(ours.wte.weight.grad, hf.transformer.wte.weight.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.blocks[1].self_attn.q_proj.weight.grad,
                               hf.transformer.h[1].attn.c_attn.weight.grad[:, :32].t(), atol=1e-5, rtol=1e-4)


def test_save_hf_layout_loads_in_transformers_and_back(tmp_path):
    torch.manual_seed(4)
    ours = GPT(TINY).eval()
    save_pretrained_hf(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "gpt2"
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    x = ids(2, 11, seed=5)
    torch.testing.assert_close(hf(x).logits, ours(x), atol=1e-5, rtol=1e-5)
    # HF's own save loads back into ours
    hf.save_pretrained(tmp_path / "hf")
    back = from_pretrained_hf(tmp_path / "hf").eval()
    torch.testing.assert_close(back(x), ours(x), atol=1e-5, rtol=1e-5)
    # and the state-dict round trip is exact
    for k, v in to_hf_state_dict(back).items():
        assert torch.equal(v, hf.state_dict()[k]), k


def test_kv_cache_and_offsets_equal_full_forward():
    torch.manual_seed(6)
    model = GPT(TINY).eval()
    x = ids(2, 12, seed=7)
    full = model(x)
    cache = model.new_cache(2)
    parts = [model(x[:, :5], cache=cache)] + [model(x[:, t:t + 1], cache=cache) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    # a left-padded row with per-row positions gives the unpadded row's logits
    pad = torch.cat([torch.zeros(1, 3, dtype=torch.long), x[:1, :9]], 1)
    mask = torch.tensor([[False] * 3 + [True] * 9])
    pos = (mask.long().cumsum(1) - 1).clamp(min=0)
    torch.testing.assert_close(model(pad, pos=pos, attention_mask=mask)[:, 3:], full[:1, :9],
                               atol=1e-5, rtol=1e-5)


def test_tied_head_presets_and_context_error():
    m = GPT(TINY)
    assert m.lm_head.weight is m.wte.weight
    assert preset("gpt2").n_embd == 768 and preset("gpt2-xl").n_layer == 48
    # GPT-2 small has 124M parameters (Radford et al. 2019, Table 2 lists 117M, a miscount)
    n = sum(p.numel() for p in GPT(preset("gpt2", n_layer=1)).parameters())
    per_block = 12 * 768 * 768 + 13 * 768                     # 4d² attn + 8d² mlp + biases + LNs
    assert n + 11 * per_block == 124_439_808
    with pytest.raises(ValueError, match="context length 32"):
        m(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown GPT preset"):
        preset("gpt5")


# ---- the speedrun options -------------------------------------------------------------------

MODERN = dict(positions="rope", norm="rmsnorm", qk_norm=True, activation="relu2", tie_head=False,
              zero_init_proj=False, logit_softcap=15.0, bias=False)


def test_modern_options_decode_with_cache_equals_recomputing():
    from deepatlas.generation.decode import generate

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=16, **MODERN)).eval()
    assert model.wpe is None and model.lm_head.weight is not model.wte.weight
    prompt = [3, 1, 4, 1, 5]
    cached = generate(model, [prompt], 12)[0]
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(12):                                     # no cache: the whole sequence each step
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    assert cached == seq[len(prompt):]


def test_softcap_bounds_logits_and_zero_init_makes_blocks_the_identity():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=30, block_size=16, n_layer=3, n_head=2, n_embd=16, logit_softcap=2.0,
                    zero_init_proj=True, tie_head=True)
    model = GPT(cfg)
    with torch.no_grad():
        model.wte.weight.mul_(100)                               # huge raw logits
        x = torch.randint(0, 30, (2, 10))
        logits = model(x)
        assert logits.abs().max() <= 2.0 and logits.abs().max() > 1.9   # tanh saturates to c in fp32
        h = model.wte(x) + model.wpe(10)
        out = h
        for i, block in enumerate(model.blocks):
            out = block(out, causal=True)
        assert torch.equal(out, h)                               # o_proj = down_proj = 0: x + 0 + 0
    untied = GPT(GPTConfig(vocab_size=30, block_size=16, n_layer=1, n_head=2, n_embd=16,
                           zero_init_proj=True, tie_head=False))
    assert untied.lm_head.weight.abs().max() == 0


def test_qk_norm_makes_attention_blind_to_the_scale_of_q_and_k_weights():
    from deepatlas.nn.attention import MultiHeadAttention

    torch.manual_seed(0)
    att = MultiHeadAttention(16, 2, qk_norm=True, bias=False).eval()   # RMSNorm(λ x W) = RMSNorm(x W)
    x = torch.randn(2, 7, 16)
    before = att(x, causal=True)
    with torch.no_grad():
        att.q_proj.weight.mul_(50)
        att.k_proj.weight.mul_(0.5)      # (not far below 1: RMSNorm's ε would start to matter)
    torch.testing.assert_close(att(x, causal=True), before, rtol=1e-4, atol=1e-5)


def test_relu2_is_relu_squared_and_hf_layout_refuses_modern_options():
    from deepatlas.nn.ffn import activate

    x = torch.randn(100)
    assert torch.equal(activate(x, "relu2"), torch.relu(x) ** 2)
    with pytest.raises(ValueError, match="positions='rope'"):
        config_to_hf(GPTConfig(positions="rope"))
    with pytest.raises(ValueError, match="valid: learned, rope"):
        GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8, positions="alibi"))
