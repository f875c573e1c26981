"""A task set with exact answers, generated from a seed: arithmetic word problems, unit
conversions, and questions about the corpus (KJV genealogy facts, rag/evalset.py).
`correct(answer, task)` compares numbers as numbers (450 = 450.0) and words as words."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

ARITHMETIC = [  # (template, answer from a and b)
    ("A farmer has {a} cows and buys {b} more. How many cows does he have now?", lambda a, b: a + b),
    ("A box holds {a} pencils. How many pencils are in {b} boxes?", lambda a, b: a * b),
    ("Tom had {a} marbles and lost {b} of them. How many marbles does he have left?", lambda a, b: a - b),
    ("A train travels {a} km every hour. How many km does it travel in {b} hours?", lambda a, b: a * b),
    ("A shop sold {a} apples on Monday and {b} apples on Tuesday. How many apples did it sell in total?",
     lambda a, b: a + b),
    ("A school has {a} pupils in each of {b} classes. How many pupils are there?", lambda a, b: a * b),
]
CONVERSIONS = [  # (template, factor)
    ("How many minutes are in {x} hours?", 60), ("How many grams are in {x} kilograms?", 1000),
    ("How many centimetres are in {x} metres?", 100), ("How many seconds are in {x} minutes?", 60),
    ("How many hours are in {x} days?", 24), ("How many millilitres are in {x} litres?", 1000),
]
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class Task:
    kind: str            # arithmetic | conversion | corpus
    text: str
    answer: str


def make_tasks(n: int, seed: int = 0, corpus_questions: list | None = None,
               kinds: tuple[str, ...] = ("arithmetic", "conversion"), small: bool = False) -> list[Task]:
    """n tasks cycling through `kinds` (and corpus, when questions are given); small=True draws
    the word problems' numbers from 2..9 (one-digit arithmetic)."""
    rng = random.Random(seed)
    kinds = list(kinds) + (["corpus"] if corpus_questions else [])
    corpus = list(corpus_questions or [])
    rng.shuffle(corpus)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "arithmetic":
            template, f = ARITHMETIC[rng.randrange(len(ARITHMETIC))]
            a, b = (rng.randint(5, 9), rng.randint(2, 4)) if small else (rng.randint(12, 99), rng.randint(3, 11))
            out.append(Task(kind, template.format(a=a, b=b), str(f(a, b))))
        elif kind == "conversion":
            template, factor = CONVERSIONS[rng.randrange(len(CONVERSIONS))]
            x = rng.choice([rng.randint(2, 48), rng.randint(3, 95) / 2])
            value = x * factor
            out.append(Task(kind, template.format(x=f"{x:g}"), f"{value:g}"))
        else:
            q = corpus.pop()
            out.append(Task(kind, q.question + " Search the Bible.", q.answers[0]))
    return out


def correct(answer: str | None, task: Task) -> bool:
    if answer is None:
        return False
    if task.kind == "corpus":
        from deepatlas.rag.evalset import normalize

        return f" {normalize(task.answer)} " in f" {normalize(answer)} "
    want = float(task.answer)
    for m in NUMBER.findall(answer):
        try:
            if abs(float(m.replace(",", "")) - want) < 1e-6:
                return True
        except ValueError:
            continue
    return False
