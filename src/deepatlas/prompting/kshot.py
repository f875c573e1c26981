"""k-shot prompting (Brown et al. 2020, GPT-3): the task's instruction, k solved examples, then
the query; no weights change. The label is read by rank classification over the label tokens:

    ŷ = argmax_{y ∈ labels} P(" " + y | instruction, (x_1, y_1), …, (x_k, y_k), x)

All test items of one prompt setting go through the model as one left-padded batch.
"""
from __future__ import annotations

import random
from typing import Sequence

import torch

from deepatlas.generation.decode import left_pad
from deepatlas.prompting.tasks import ClassificationTask, Example


def kshot_prompt(task: ClassificationTask, shots: Sequence[Example], query: str) -> str:
    parts = [task.instruction, ""]
    for s in shots:
        parts += [f"{task.input_name}: {s.text}", f"{task.label_name}: {s.label}", ""]
    parts += [f"{task.input_name}: {query}", f"{task.label_name}:"]
    return "\n".join(parts)


def label_ids(tokenizer, labels: Sequence[str]) -> list[int]:
    """The single token of each " label"; ValueError when a label takes several tokens."""
    out = []
    for label in labels:
        ids = tokenizer.encode(" " + label)
        if len(ids) != 1:
            raise ValueError(f"label {label!r} is {len(ids)} tokens {ids}; rank classification here needs one")
        out.append(ids[0])
    return out


@torch.no_grad()
def classify(model, tokenizer, prompts: list[str], labels: Sequence[str], batch_size: int = 16) -> list[str]:
    """The most probable label of each prompt (one forward pass per batch, last position)."""
    ids = label_ids(tokenizer, labels)
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        rows = [tokenizer.encode(p) for p in prompts[start:start + batch_size]]
        x, mask, pos = left_pad(rows)                                     # (B, L) each
        logits = model(x, pos=pos, attention_mask=mask)[:, -1, ids]       # (B, n_labels)
        out += [labels[i] for i in logits.argmax(-1).tolist()]
    return out


def sample_shots(pool: Sequence[Example], k: int, rng: random.Random, labels: Sequence[str]) -> list[Example]:
    """k shots drawn from the pool, as balanced over the labels as k allows, in a random order."""
    if k > len(pool):
        raise ValueError(f"k={k} shots from a pool of {len(pool)} examples: use k ≤ {len(pool)}")
    by_label = {y: [e for e in pool if e.label == y] for y in labels}
    shots: list[Example] = []
    order = list(labels)
    rng.shuffle(order)
    while len(shots) < k:
        for y in order:
            left = [e for e in by_label[y] if e not in shots]
            if len(shots) < k and left:          # a label the pool has run out of is skipped
                shots.append(rng.choice(left))
    rng.shuffle(shots)
    return shots


def kshot_accuracy(model, tokenizer, task: ClassificationTask, pool: Sequence[Example], test: Sequence[Example],
                   k: int, seed: int) -> float:
    """Accuracy on `test` with one draw (seed) of k shots, the same shots for every item."""
    shots = sample_shots(pool, k, random.Random(seed), task.labels)
    prompts = [kshot_prompt(task, shots, e.text) for e in test]
    predicted = classify(model, tokenizer, prompts, task.labels)
    return sum(p == e.label for p, e in zip(predicted, test)) / len(test)
