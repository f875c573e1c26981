"""Direct answers, chain-of-thought and self-consistency on word problems with exact numbers.

direct:  "Q: … A: The answer is" -> the first number generated (greedy)
CoT:     Wei et al. 2022 — a worked example whose answer shows its steps, then "A: Let's think
         step by step." (Kojima et al. 2022); the answer is the last number generated
self-consistency (Wang et al. 2023): sample n reasoning paths at temperature T and vote:
         â = argmax_a Σ_i 1[answer(path_i) = a]      (ties: the answer reached first)
"""
from __future__ import annotations

import re
from collections import Counter

import torch

from deepatlas.generation.decode import SamplingSettings, generate

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
DIRECT_EXAMPLE = ("Q: A bag holds 6 apples. How many apples are in 4 bags?\nA: The answer is 24.\n\n")
COT_EXAMPLE = ("Q: A bag holds 6 apples. How many apples are in 4 bags?\n"
               "A: Let's think step by step. Each bag holds 6 apples and there are 4 bags, so 6 * 4 = 24. "
               "The answer is 24.\n\n")


def direct_prompt(question: str) -> str:
    return DIRECT_EXAMPLE + f"Q: {question}\nA: The answer is"


def cot_prompt(question: str) -> str:
    return COT_EXAMPLE + f"Q: {question}\nA: Let's think step by step."


def extract(text: str, last: bool) -> str | None:
    """The first (direct) or last (CoT) number before the next question, as a canonical string."""
    text = text.split("\nQ:")[0].split("\n\n")[0]
    numbers = NUMBER.findall(text.replace(",", ""))
    if not numbers:
        return None
    value = float(numbers[-1] if last else numbers[0])
    return f"{value:g}"


def vote(answers: list[str | None]) -> str | None:
    """Majority over the extracted answers (None = no answer, never wins); ties: first reached."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


@torch.no_grad()
def answer_paths(model, tokenizer, prompt: str, n: int, max_new_tokens: int, temperature: float | None,
                 seed: int = 0, last: bool = True) -> list[str | None]:
    """n answers: greedy when temperature is None (n must be 1), else n sampled paths in one batch."""
    ids = tokenizer.encode(prompt)
    if temperature is None:
        settings, rows = SamplingSettings(greedy=True), [ids]
    else:
        settings, rows = SamplingSettings(greedy=False, temperature=temperature, top_k=40), [ids] * n
    outs = generate(model, rows, max_new_tokens, settings, seed=seed, stop_strings=["\nQ:", "\n\n"],
                    decode=tokenizer.decode)
    return [extract(tokenizer.decode(o), last) for o in outs]
