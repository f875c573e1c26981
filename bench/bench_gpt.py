"""GPT benchmarks against Hugging Face's GPT2LMHeadModel, same weights and data, same process.

Ours and HF are timed in turns (bench.common.interleaved_median_times): on a shared machine a
slow spell then slows both sides alike.

train_step:     one AdamW training step of a nanoGPT-char-sized GPT (6 layers, 6 heads, 384 dims,
                context 256, batch 8, dropout 0): deepatlas (SDPA's causal kernel, fused LayerNorm,
                one q/k/v matmul, fused AdamW where torch has it) vs HF (its default sdpa attention,
                default AdamW). Goal: ≥ 1.5× faster. compile=True also compiles ours (torch.compile;
                its compile time is reported apart); the record's "form" says which ran.
train_step_same_optimizer: the same, HF with fused AdamW too: what the model code alone gains.
train_step_bf16 / train_step_bf16_both: ours under bf16 autocast against HF fp32 (each tool's
                fast path on this AMX CPU), and both under bf16 autocast (the same arithmetic).
greedy_decode:  GPT-2 small (124M, random weights), batch 1, 64 new greedy tokens with the KV
                cache, both fp32: deepatlas generate vs HF generate. Goal: ≥ 2× tokens/s.
greedy_decode_compact / greedy_decode_int8: the same, ours with compact weights (bf16, or int8
                through the fused int8pack kernel) vs HF fp32. One token reads
                every weight once, so on a CPU half the bytes is the lever; the record holds the
                share of greedy tokens equal to our fp32 model's on the same prompt.
cache_speedup:  ours with the KV cache vs ours recomputing the sequence (same 64 tokens).
"""
from __future__ import annotations

import copy
import time

import torch

from bench.common import interleaved_median_times, median_time, result
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


def _train_pair(B: int, T: int, compile: bool, hf_fused: bool, repeats: int, ours_bf16: bool = False,
                hf_bf16: bool = False) -> tuple[dict, dict]:
    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=65, block_size=T, n_layer=6, n_head=6, n_embd=384, dropout=0.0))
    hf = _hf_twin(ours)
    x = torch.randint(0, 65, (B, T + 1), generator=torch.Generator().manual_seed(1))
    batch = (x[:, :-1], x[:, 1:])
    run_ours, info = ours, {"form": "eager"}
    if compile:
        run_ours = torch.compile(ours)
        info["form"] = "torch.compile"

    def stepper(model, loss_fn, fused, bf16=False):
        opt = _adamw(model.parameters(), fused)

        def step():
            # bf16: torch.autocast — matmuls in bfloat16 (this CPU's AMX tiles), fp32 master weights
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_fn(model)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    step_ours = stepper(run_ours, lambda m: lm_loss(m, batch), True, ours_bf16)
    if compile:
        start = time.perf_counter()
        step_ours()                                          # compiles forward and backward
        info["compile_s"] = time.perf_counter() - start
    step_hf = stepper(hf, lambda m: m(batch[0], labels=x[:, :-1]).loss, hf_fused, hf_bf16)
    t = interleaved_median_times({"ours": step_ours, "hf": step_hf}, warmup=1, repeats=repeats)
    info["optimizer"] = {"ours": "AdamW(fused=True)", "peer": f"AdamW({'fused=True' if hf_fused else 'default'})"}
    info["precision"] = {"ours": "bf16 autocast" if ours_bf16 else "fp32", "peer": "bf16 autocast" if hf_bf16 else "fp32"}
    return t, info


def train_step(B: int = 8, T: int = 256, repeats: int = 3, compile: bool = False) -> dict:
    t, info = _train_pair(B, T, compile, hf_fused=False, repeats=repeats)
    return result("gpt_train_step", "s/step", t["ours"], t["hf"], "HF GPT2LMHeadModel", 1.5) | info


def train_step_same_optimizer(B: int = 8, T: int = 256, repeats: int = 3) -> dict:
    t, info = _train_pair(B, T, False, hf_fused=True, repeats=repeats)
    return result("gpt_train_step_same_optimizer", "s/step", t["ours"], t["hf"],
                  "HF GPT2LMHeadModel, fused AdamW", 1.1) | info


def train_step_bf16(B: int = 8, T: int = 256, repeats: int = 3) -> dict:
    """Ours with bf16 autocast (what this CPU's AMX units make worth picking) vs HF as it comes
    (fp32, default AdamW): the speed a user gets from each tool's fast path. Not the same
    arithmetic: bf16 matmuls round to 8 bits of mantissa (L7 measures what that costs in loss)."""
    t, info = _train_pair(B, T, False, hf_fused=False, repeats=repeats, ours_bf16=True)
    return result("gpt_train_step_bf16_vs_hf_fp32", "s/step", t["ours"], t["hf"], "HF GPT2LMHeadModel fp32", 1.5) | info


def train_step_bf16_both(B: int = 8, T: int = 256, repeats: int = 3) -> dict:
    """Both with bf16 autocast and fused AdamW: the same arithmetic on both sides."""
    t, info = _train_pair(B, T, False, hf_fused=True, repeats=repeats, ours_bf16=True, hf_bf16=True)
    return result("gpt_train_step_bf16_both", "s/step", t["ours"], t["hf"], "HF GPT2LMHeadModel, bf16 autocast, fused AdamW",
                  1.1) | info


def _gpt2_small_pair():
    torch.manual_seed(0)
    ours = GPT(preset("gpt2")).eval()
    return ours, _hf_twin(ours).eval()


def _hf_greedy(hf, prompt: list[int], new_tokens: int):
    ids = torch.tensor([prompt])

    def run():
        with torch.no_grad():
            return hf.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                               do_sample=False, use_cache=True, pad_token_id=0)[0, len(prompt):].tolist()
    return run


def greedy_decode(new_tokens: int = 64, repeats: int = 3) -> dict:
    ours, hf = _gpt2_small_pair()
    prompt = list(range(100, 116))
    hf_run = _hf_greedy(hf, prompt, new_tokens)
    if hf_run() != generate(ours, [prompt], new_tokens)[0]:
        raise RuntimeError("ours and HF chose different greedy tokens: not the same computation")
    t = interleaved_median_times({"ours": lambda: generate(ours, [prompt], new_tokens), "hf": hf_run},
                                 warmup=1, repeats=repeats)
    return result("gpt2_greedy_decode", "tokens/s", new_tokens / t["ours"], new_tokens / t["hf"],
                  "HF generate (KV cache)", 2.0, higher_is_better=True) | {"weights": {"ours": "fp32", "peer": "fp32"}}


def _compact_gpt(model: GPT, weights: str) -> GPT:
    """bf16: every weight in bfloat16. int8: every linear (the tied head too; the embedding
    stays fp32 for the lookup) as quant.linear.Int8Linear's fused int8pack kernel, + its bias."""
    from deepatlas.quant.linear import Int8Linear, compact_model

    if weights != "int8":
        return compact_model(model, weights)

    class Int8LinearBias(Int8Linear):            # y = s ⊙ (x Qᵀ) + b  (GPT-2's linears have biases)
        def __init__(self, lin: torch.nn.Linear):
            super().__init__(lin.weight)
            self.bias = None if lin.bias is None else lin.bias.detach().clone()

        def forward(self, x):
            y = super().forward(x)
            return y if self.bias is None else y + self.bias

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, Int8LinearBias(child))
    return model


def greedy_decode_compact(new_tokens: int = 64, repeats: int = 3, weights: str = "bf16") -> dict:
    ours, hf = _gpt2_small_pair()
    prompt = list(range(100, 116))
    small = _compact_gpt(copy.deepcopy(ours), weights)
    ref, got = generate(ours, [prompt], new_tokens)[0], generate(small, [prompt], new_tokens)[0]
    same = [a == b for a, b in zip(ref, got)]
    t = interleaved_median_times({"ours": lambda: generate(small, [prompt], new_tokens),
                                  "hf": _hf_greedy(hf, prompt, new_tokens)}, warmup=1, repeats=repeats)
    return result(f"gpt2_greedy_decode_{weights}_vs_hf_fp32", "tokens/s", new_tokens / t["ours"],
                  new_tokens / t["hf"], "HF generate (KV cache), fp32", 2.0, higher_is_better=True) | {
        "weights": {"ours": weights, "peer": "fp32"},
        "greedy_agreement_vs_our_fp32": sum(same) / len(same),
        "first_divergence": same.index(False) if False in same else None}


def greedy_decode_int8(new_tokens: int = 64, repeats: int = 3) -> dict:
    return greedy_decode_compact(new_tokens, repeats, weights="int8")


def cache_speedup(new_tokens: int = 64, repeats: int = 3) -> dict:
    ours, _ = _gpt2_small_pair()
    prompt = list(range(100, 116))
    t_cache = median_time(lambda: generate(ours, [prompt], new_tokens), warmup=1, repeats=repeats)
    t_plain = median_time(lambda: generate(ours, [prompt], new_tokens, use_cache=False),
                          warmup=1, repeats=repeats)
    return result("gpt2_kv_cache_speedup", "tokens/s", new_tokens / t_cache, new_tokens / t_plain,
                  "ours without cache", 1.0, higher_is_better=True)


BENCHMARKS = [train_step, train_step_same_optimizer, train_step_bf16, train_step_bf16_both, greedy_decode, greedy_decode_compact, greedy_decode_int8, cache_speedup]
