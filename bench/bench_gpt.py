"""GPT benchmarks against Hugging Face's GPT2LMHeadModel, same weights and data, same process.

train_step:     one AdamW training step of a nanoGPT-char-sized GPT (6 layers, 6 heads, 384 dims,
                context 256, batch 8): deepatlas (SDPA, fused AdamW where torch has it) vs HF
                (its default attention, default AdamW). Goal: ≥ 1.5× faster.
greedy_decode:  GPT-2 small (124M, random weights), batch 1, 64 new greedy tokens with the KV
                cache: deepatlas generate vs HF generate. Goal: ≥ 2× tokens/s.
cache_speedup:  ours with the KV cache vs ours recomputing the sequence (same 64 tokens).
"""
from __future__ import annotations

import torch

from bench.common import median_time, result
from deepatlas.generation.decode import generate
from deepatlas.models.gpt import GPT, GPTConfig, config_to_hf, lm_loss, preset, to_hf_state_dict


def _hf_twin(model: GPT):
    """An HF GPT2LMHeadModel holding exactly `model`'s weights."""
    import transformers

    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config_to_hf(model.config)))
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(model), strict=False)
    if [k for k in missing if k != "lm_head.weight"] or unexpected:
        raise RuntimeError(f"HF twin: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    return hf


def _adamw(params, fused: bool) -> torch.optim.Optimizer:
    if fused:
        try:
            return torch.optim.AdamW(params, lr=1e-4, fused=True)
        except (RuntimeError, TypeError):   # no fused kernel for this device in this torch
            pass
    return torch.optim.AdamW(params, lr=1e-4)


def train_step(B: int = 8, T: int = 256, repeats: int = 3) -> dict:
    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=65, block_size=T, n_layer=6, n_head=6, n_embd=384))
    hf = _hf_twin(ours)
    x = torch.randint(0, 65, (B, T + 1), generator=torch.Generator().manual_seed(1))
    batch = (x[:, :-1], x[:, 1:])

    def stepper(model, loss_fn, fused):
        opt = _adamw(model.parameters(), fused)

        def step():
            loss = loss_fn(model)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    t_ours = median_time(stepper(ours, lambda m: lm_loss(m, batch), True), warmup=1, repeats=repeats)
    t_hf = median_time(stepper(hf, lambda m: m(batch[0], labels=x[:, :-1]).loss, False),
                       warmup=1, repeats=repeats)
    return result("gpt_train_step", "s/step", t_ours, t_hf, "HF GPT2LMHeadModel", 1.5)


def _gpt2_small_pair():
    torch.manual_seed(0)
    ours = GPT(preset("gpt2")).eval()
    return ours, _hf_twin(ours).eval()


def greedy_decode(new_tokens: int = 64, repeats: int = 3) -> dict:
    ours, hf = _gpt2_small_pair()
    prompt = list(range(100, 116))
    out_ours = generate(ours, [prompt], new_tokens)[0]
    ids = torch.tensor([prompt])

    def hf_generate():
        return hf.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           use_cache=True, pad_token_id=0)

    if hf_generate()[0, len(prompt):].tolist() != out_ours:
        raise RuntimeError("ours and HF chose different greedy tokens: not the same computation")
    t_ours = median_time(lambda: generate(ours, [prompt], new_tokens), warmup=1, repeats=repeats)
    with torch.no_grad():
        t_hf = median_time(hf_generate, warmup=1, repeats=repeats)
    return result("gpt2_greedy_decode", "tokens/s", new_tokens / t_ours, new_tokens / t_hf,
                  "HF generate (KV cache)", 2.0, higher_is_better=True)


def cache_speedup(new_tokens: int = 64, repeats: int = 3) -> dict:
    ours, _ = _gpt2_small_pair()
    prompt = list(range(100, 116))
    t_cache = median_time(lambda: generate(ours, [prompt], new_tokens), warmup=1, repeats=repeats)
    t_plain = median_time(lambda: generate(ours, [prompt], new_tokens, use_cache=False),
                          warmup=1, repeats=repeats)
    return result("gpt2_kv_cache_speedup", "tokens/s", new_tokens / t_cache, new_tokens / t_plain,
                  "ours without cache", 1.0, higher_is_better=True)


BENCHMARKS = [train_step, greedy_decode, cache_speedup]
