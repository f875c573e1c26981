"""SmolLM2-135M decoding (S3): our fast decode path vs llama.cpp on the same GGUF, and vs our plain path.

All in one process, on THREADS CPU threads, greedy, batch 1 unless said, decode only (the
prompt's prefill is not timed), timed in turns by bench.common.interleaved_median_times:
    ours        deepatlas.generation.fast_decode (fused projections, slot KV cache), int4 = the
                file's Q4_1 codes in torch's fused int4 kernel, the Q8_0 output head as int8
    llama.cpp   llama-cpp-python's Llama(n_threads=THREADS, n_ctx=512) on the same file: eval of
                the prompt, then NEW_TOKENS × eval([argmax(scores[-1])]) (../shared/MEASURED.md)
llama-cpp-python is not a dependency: build it once with
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" pip install llama-cpp-python
(the native build crashes on this CPU); without it the llama.cpp benchmark fails with that
message and the others still run.
"""
from __future__ import annotations

import functools
import time

import torch

from bench.common import interleaved_median_times, result

PROMPT = "Write a short poem about the moon."
NEW_TOKENS = 128
THREADS = 2
LLAMA_CPP_HINT = ('llama.cpp missing: CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON '
                  '-DGGML_F16C=ON" pip install llama-cpp-python')


@functools.lru_cache(maxsize=1)
def _models():
    from deepatlas.chat.session import ChatModel
    from deepatlas.generation.fast_decode import FastLlama
    from deepatlas.quant.weights import require_smollm2

    torch.set_num_threads(THREADS)
    path = require_smollm2()
    chats = {form: ChatModel.load(path, form) for form in ("int4", "fp32")}
    fast = {form: FastLlama(c.model, n_slots=16, max_len=512) for form, c in chats.items()}
    ids = chats["fp32"].prompt_ids([{"role": "user", "content": PROMPT}])
    return path, chats, fast, ids


def _ours_decode(fast, ids: list[int], n: int):
    """A run: prefill (untimed), then n greedy steps timed -> seconds."""
    def run() -> float:
        token = int(fast.prefill(0, ids).argmax())
        t = time.perf_counter()
        for _ in range(n):
            token = int(fast.step([token])[0].argmax())
        return time.perf_counter() - t
    return run


def _decode_only(fn):
    """interleaved_median_times times the whole call; these report their own decode-only seconds."""
    box = {"s": []}

    def run() -> None:
        box["s"].append(fn())
    return run, box


def smollm2_decode_vs_llamacpp() -> dict:
    """The goal of issue 16: ours (fast, int4) ≥ 1.0× llama.cpp's tokens/s on the same Q4_1 file."""
    try:
        import llama_cpp
    except ImportError:
        raise RuntimeError(LLAMA_CPP_HINT) from None
    import numpy as np

    path, chats, fast, ids = _models()
    llm = llama_cpp.Llama(model_path=str(path), n_threads=THREADS, n_ctx=512, verbose=False)

    def peer() -> float:
        llm.reset()
        llm.eval(ids)
        t = time.perf_counter()
        for _ in range(NEW_TOKENS):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        return time.perf_counter() - t

    ours_run, ours_s = _decode_only(_ours_decode(fast["int4"], ids, NEW_TOKENS))
    peer_run, peer_s = _decode_only(peer)
    interleaved_median_times({"ours": ours_run, "peer": peer_run}, warmup=1, repeats=3)
    med = lambda xs: sorted(xs[1:])[len(xs[1:]) // 2]  # noqa: E731  (the warm-up call dropped)
    return result("smollm2_decode_vs_llamacpp", "tokens/s", NEW_TOKENS / med(ours_s["s"]),
                  NEW_TOKENS / med(peer_s["s"]), f"llama.cpp {llama_cpp.__version__} Q4_1, {THREADS} threads",
                  1.0, higher_is_better=True)


def _fast_vs_plain(form: str, goal: float) -> dict:
    from deepatlas.generation.decode import generate
    from deepatlas.generation.fast_decode import greedy

    _, chats, fast, ids = _models()
    n = 32
    t = interleaved_median_times({"ours": lambda: greedy(fast[form], ids, n),
                                  "peer": lambda: generate(chats[form].model, [ids], n)}, warmup=1, repeats=3)
    return result(f"smollm2_fast_decode_{form}", "tokens/s", n / t["ours"], n / t["peer"],
                  f"our plain path (decode.generate), {form}", goal, higher_is_better=True)


def smollm2_fast_decode_int4() -> dict:
    return _fast_vs_plain("int4", 1.3)


def smollm2_fast_decode_fp32() -> dict:
    return _fast_vs_plain("fp32", 1.1)


def smollm2_batch16_fp32() -> dict:
    """Continuous batching: decode tokens/s over 16 rows vs one row (fp32, rows share the weight read)."""
    from deepatlas.generation.batching import ContinuousBatcher, decode_throughput

    _, chats, fast, ids = _models()
    batcher = ContinuousBatcher(fast["fp32"])
    rates: dict[str, list[float]] = {"ours": [], "peer": []}
    for _ in range(3):
        rates["ours"].append(decode_throughput(batcher, [ids] * 16, 16))
        rates["peer"].append(decode_throughput(batcher, [ids], 16))
    med = {k: sorted(v)[1] for k, v in rates.items()}
    return result("smollm2_batch16_fp32", "tokens/s", med["ours"], med["peer"],
                  "the same batcher with one row", 2.0, higher_is_better=True)


def smollm2_speculative_lookup_fp32() -> dict:
    """Prompt-lookup speculative decoding on a copy-heavy prompt vs plain fast greedy (same tokens)."""
    from deepatlas.experiments.s3_inference import COPY_PROMPT
    from deepatlas.generation.fast_decode import FastLlama, greedy
    from deepatlas.generation.speculative import PromptLookup, speculative_greedy

    _, chats, fast, _ = _models()
    ids = chats["fp32"].prompt_ids([{"role": "user", "content": COPY_PROMPT}])
    target = FastLlama(chats["fp32"].model, max_len=512)
    n = 48
    want = greedy(fast["fp32"], ids, n)
    got, _ = speculative_greedy(target, PromptLookup(), ids, n, k=4)
    if got != want:
        raise AssertionError("speculative output differs from greedy")
    t = interleaved_median_times({"ours": lambda: speculative_greedy(target, PromptLookup(), ids, n, k=4),
                                  "peer": lambda: greedy(fast["fp32"], ids, n)}, warmup=1, repeats=3)
    return result("smollm2_speculative_lookup_fp32", "tokens/s", n / t["ours"], n / t["peer"],
                  "fast greedy without drafts, fp32", 1.0, higher_is_better=True)


BENCHMARKS = [smollm2_decode_vs_llamacpp, smollm2_fast_decode_int4, smollm2_fast_decode_fp32,
              smollm2_batch16_fp32, smollm2_speculative_lookup_fp32]
