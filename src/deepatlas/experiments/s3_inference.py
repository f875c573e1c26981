"""S3 — inference optimisation on SmolLM2-135M: each trick measured against the plain path.

Built: generation/fast_decode.py (fused q/k/v and gate/up, a preallocated slot KV cache, one
mask and one RoPE lookup a step, activations in the kernels' dtype), generation/batching.py
(continuous batching over the slots), generation/speculative.py (greedy speculative decoding
with prompt lookup or the int4 copy as the draft), quant/linear.py (int8 / int4 weights).

Measured, greedy decoding of a ChatML prompt on `threads` CPU threads, median of `repeats`
interleaved runs:
    plain vs fast       decode.generate vs fast_decode.greedy, fp32 (the same tokens) and int4
    batching            decode tokens/s over all rows vs batch size B (each row its own prompt;
                        the prompts' prefill not timed), fp32
                        and int4: fp32 rows share one read of the weights (MKL GEMM); the int4
                        kernel dequantises per row, so its cost grows with B (compute-bound)
    speculative         fp32 target + int4 draft; fp32 and int4 targets + prompt lookup on a
                        prompt that asks to copy text; acceptance rate, tokens per target pass,
                        speed-up over the same target's fast greedy; output equal token for token
    quality             perplexity on held-out text (Persuasion) of fp32, bf16, int8, int4
torch.compile is not used: on this 2-core machine inductor's C++ compile of the 30-layer step
takes minutes for a path whose remaining cost is mostly the int4 / int8 kernels themselves.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run

PROMPT = "Write a short poem about the moon."
COPY_TEXT = ("The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single "
             "step. All that glitters is not gold. Actions speak louder than words.")
COPY_PROMPT = f"Repeat this text exactly, word for word:\n{COPY_TEXT}"
BATCH_PROMPTS = ["Write a short poem about the moon.", "What is the capital of France?", "Name three colours.",
                 "Explain gravity in one sentence.", "Give me a fruit.", "Say hello in Spanish.",
                 "What is 2 + 2?", "Describe a cat."]


@dataclass
class Config:
    new_tokens: int = 48
    batch_sizes: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    spec_k: int = 4
    ppl_tokens: int = 1024
    repeats: int = 3
    threads: int = 1           # bench/bench_serving.py measures 2 threads; 2 on a busy machine thrash


def _median_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each fn, timed in turns after one warm-up turn (slow spells hit all alike)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


@torch.inference_mode()
def perplexity(model: torch.nn.Module, ids: list[int]) -> float:
    """exp(mean −log P(x_t | x_<t)) over the text, one forward pass of the plain model."""
    x = torch.tensor([ids])
    logits = model(x[:, :-1]).float()                                # (1, T-1, V)
    return float(torch.exp(F.cross_entropy(logits[0], x[0, 1:])))


@experiment("S3", "s3-inference",
            claim="on SmolLM2-135M the fast decode path beats the plain one (same fp32 tokens), batching "
                  "multiplies throughput, speculative decoding keeps the greedy output token for token and "
                  "pays where the draft is right, and int8/int4 cost little perplexity",
            config=Config, one_thread=False,
            # repeats 3 in quick too: with one timed run, one slow spell on a loaded CI machine
            # flipped a speed check (a stop failed CI on it); the median of 3 turns outlasts one
            quick={"new_tokens": 8, "batch_sizes": [1, 4], "spec_k": 4, "ppl_tokens": 64, "repeats": 3,
                   "threads": 1},
            headline={"fast_int4_tokens_per_s": ("fast int4 decode", "{:.1f} tok/s"),
                      "fast_speedup_int4": ("vs plain int4", "{:.2f}×"),
                      "batch_throughput_gain": ("fp32 batch throughput gain", "{:.1f}×"),
                      "spec_lookup_speedup_fp32": ("prompt-lookup speed-up (fp32, copy prompt)", "{:.2f}×"),
                      "ppl_int4_over_fp32": ("int4 perplexity / fp32", "{:.3f}")})
def s3_inference(cfg: Config, run: Run) -> Verdict:
    from deepatlas.chat.session import ChatModel
    from deepatlas.data.austen import austen_texts
    from deepatlas.generation.batching import ContinuousBatcher, decode_throughput
    from deepatlas.generation.decode import generate
    from deepatlas.generation.fast_decode import FastLlama, greedy
    from deepatlas.generation.speculative import DraftModel, PromptLookup, speculative_greedy
    from deepatlas.quant.linear import compact_model
    from deepatlas.quant.weights import require_smollm2

    if cfg.new_tokens < 4 or not cfg.batch_sizes or min(cfg.batch_sizes) < 1 or cfg.spec_k < 1:
        raise ValueError(f"new_tokens {cfg.new_tokens} ≥ 4, batch_sizes {cfg.batch_sizes} ≥ 1, spec_k {cfg.spec_k} ≥ 1")
    torch.set_num_threads(cfg.threads)
    path = require_smollm2()
    t0 = time.perf_counter()
    chats = {form: ChatModel.load(path, form) for form in ("fp32", "int4")}
    run.print(f"loaded fp32 and int4 in {time.perf_counter() - t0:.1f} s")
    ids = chats["fp32"].prompt_ids([{"role": "user", "content": PROMPT}])
    n = cfg.new_tokens
    ctx = 512
    fast = {form: FastLlama(c.model, n_slots=max(cfg.batch_sizes), max_len=ctx) for form, c in chats.items()}
    m: dict[str, float] = {}

    # ---- 1. plain vs fast, fp32 and int4 ----------------------------------------------------
    tokens = {"plain_fp32": generate(chats["fp32"].model, [ids], n)[0], "fast_fp32": greedy(fast["fp32"], ids, n),
              "plain_int4": generate(chats["int4"].model, [ids], n)[0], "fast_int4": greedy(fast["int4"], ids, n)}
    t = _median_times({"plain_fp32": lambda: generate(chats["fp32"].model, [ids], n),
                       "fast_fp32": lambda: greedy(fast["fp32"], ids, n),
                       "plain_int4": lambda: generate(chats["int4"].model, [ids], n),
                       "fast_int4": lambda: greedy(fast["int4"], ids, n)}, cfg.repeats)
    for k, s in t.items():
        m[f"{k}_tokens_per_s"] = n / s
    m["fast_speedup_fp32"] = t["plain_fp32"] / t["fast_fp32"]
    m["fast_speedup_int4"] = t["plain_int4"] / t["fast_int4"]
    fp32_equal = tokens["plain_fp32"] == tokens["fast_fp32"]
    int4_agree = sum(a == b for a, b in zip(tokens["plain_int4"], tokens["fast_int4"])) / n
    m["fast_int4_agrees_with_plain_int4"] = int4_agree
    run.print(f"decode tok/s  plain fp32 {m['plain_fp32_tokens_per_s']:.1f}  fast fp32 {m['fast_fp32_tokens_per_s']:.1f}"
              f"  (same tokens: {fp32_equal})  plain int4 {m['plain_int4_tokens_per_s']:.1f}  fast int4 "
              f"{m['fast_int4_tokens_per_s']:.1f}  (fast vs plain int4 tokens agree {int4_agree:.0%})")

    # ---- 2. batching: throughput vs batch size (continuous batcher, fp32 and int4) ------------
    through: dict[str, dict[int, float]] = {}
    for form in ("fp32", "int4"):
        batcher = ContinuousBatcher(fast[form])
        prompts = [chats[form].prompt_ids([{"role": "user", "content": BATCH_PROMPTS[i % len(BATCH_PROMPTS)]}])
                   for i in range(max(cfg.batch_sizes))]
        rates: dict[int, list[float]] = {b: [] for b in cfg.batch_sizes}
        for _ in range(cfg.repeats):                               # in turns, like _median_times
            for b in cfg.batch_sizes:
                rates[b].append(decode_throughput(batcher, prompts[:b], n))
        through[form] = {b: statistics.median(v) for b, v in rates.items()}
        for b, v in through[form].items():
            m[f"batch{b}_{form}_tokens_per_s"] = v
            run.log(form=form, batch=b, tokens_per_s=v)
        m[f"batch_gain_{form}"] = through[form][max(cfg.batch_sizes)] / through[form][min(cfg.batch_sizes)]
        run.print(f"batch tok/s {form}  " + "  ".join(f"B={b}: {v:.1f}" for b, v in through[form].items()))
    m["batch_throughput_gain"] = m["batch_gain_fp32"]

    # ---- 3. speculative decoding ---------------------------------------------------------------
    copy_ids = chats["fp32"].prompt_ids([{"role": "user", "content": COPY_PROMPT}])
    draft = FastLlama(chats["int4"].model, max_len=ctx)      # the int4 copy drafts for fp32
    cases = {"lookup_fp32": ("fp32", PromptLookup(), copy_ids), "lookup_int4": ("int4", PromptLookup(), copy_ids),
             "draft_int4_for_fp32": ("fp32", DraftModel(draft), ids)}
    spec_equal = True
    for name, (form, drafter, p) in cases.items():
        target = FastLlama(chats[form].model, max_len=ctx)
        want = greedy(fast[form], p, n)
        got, stats = speculative_greedy(target, drafter, p, n, k=cfg.spec_k)
        spec_equal &= got == want
        ts = _median_times({"greedy": lambda: greedy(fast[form], p, n),
                            "spec": lambda: speculative_greedy(target, drafter, p, n, k=cfg.spec_k)}, cfg.repeats)
        m[f"spec_{name}_speedup"] = ts["greedy"] / ts["spec"]
        m[f"spec_{name}_acceptance"] = stats.acceptance
        m[f"spec_{name}_tokens_per_pass"] = stats.tokens_per_pass
        run.print(f"speculative {name}: equal {got == want}, acceptance {stats.acceptance:.0%}, "
                  f"{stats.tokens_per_pass:.2f} tokens/pass, speed-up {m[f'spec_{name}_speedup']:.2f}×")
    m["spec_lookup_speedup_fp32"] = m["spec_lookup_fp32_speedup"]

    # ---- 4. quality: perplexity on held-out text ------------------------------------------------
    text = austen_texts()["Persuasion"]
    held = chats["fp32"].tokenizer.encode(text[len(text) // 2:len(text) // 2 + 8 * cfg.ppl_tokens])[:cfg.ppl_tokens]
    forms = {"fp32": chats["fp32"].model, "int4": chats["int4"].model,
             "int8": compact_model(copy.deepcopy(chats["fp32"].model), "int8"),
             "bf16": compact_model(copy.deepcopy(chats["fp32"].model), "bf16")}
    for form, model in forms.items():
        m[f"ppl_{form}"] = perplexity(model, held)
    # what the fast int4 path itself computes (bf16 activations, RoPE and attention included)
    f4 = FastLlama(chats["int4"].model, max_len=len(held))
    logits = f4.extend(0, held[:-1])                                     # (T-1, V)
    m["ppl_fast_int4"] = float(torch.exp(F.cross_entropy(logits, torch.tensor(held[1:]))))
    for form in ("bf16", "int8", "int4", "fast_int4"):
        m[f"ppl_{form}_over_fp32"] = m[f"ppl_{form}"] / m["ppl_fp32"]
    run.print("perplexity  " + "  ".join(f"{f}: {m[f'ppl_{f}']:.2f}" for f in [*forms, "fast_int4"]))

    _plot(run, m, through)
    checks = {"fast fp32 = plain fp32 tokens": fp32_equal,
              "fast int4 ≥ 1.3× plain int4": m["fast_speedup_int4"] >= 1.3,
              "fast fp32 ≥ 1.0× plain fp32": m["fast_speedup_fp32"] >= 1.0,
              "fp32 batch throughput ≥ 2× B=1": m["batch_gain_fp32"] >= 2.0,
              "speculative = greedy": spec_equal,
              "prompt lookup pays on the copy prompt": m["spec_lookup_fp32_speedup"] > 1.0,
              "int8 ppl ≤ 1.02× fp32": m["ppl_int8_over_fp32"] <= 1.02,
              "int4 ppl ≤ 1.15× fp32 (plain and fast path)": max(m["ppl_int4_over_fp32"],
                                                                  m["ppl_fast_int4_over_fp32"]) <= 1.15}
    m["checks_passed"] = sum(checks.values())
    notes = "\n".join(f"[{'x' if ok else ' '}] {c}" for c, ok in checks.items())
    return Verdict(held=all(checks.values()), metrics=m, notes=notes)


def _plot(run: Run, m: dict[str, float], through: dict[str, dict[int, float]]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    names = ["plain_fp32", "fast_fp32", "plain_int4", "fast_int4"]
    ax[0].bar(names, [m[f"{k}_tokens_per_s"] for k in names], color=["#aaa", "#36c", "#aaa", "#36c"])
    ax[0].set_ylabel("tokens/s (batch 1, greedy)")
    ax[0].set_title("plain vs fast decode")
    for form, tb in through.items():
        ax[1].plot(list(tb), list(tb.values()), "o-", label=form)
    ax[1].set_xscale("log", base=2)
    ax[1].set_xlabel("batch size")
    ax[1].set_ylabel("tokens/s over all rows")
    ax[1].set_title("continuous batching")
    ax[1].legend()
    forms = ["fp32", "bf16", "int8", "int4"]
    ax[2].bar(forms, [m[f"ppl_{f}"] for f in forms])
    ax[2].set_ylabel("perplexity (Persuasion, held out)")
    ax[2].set_title("quality cost of compact weights")
    fig.tight_layout()
    run.savefig(fig, "s3_inference")
