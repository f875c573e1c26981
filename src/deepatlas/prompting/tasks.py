"""Classification tasks with exact labels, generated from word lists and a seed.

sentiment:  "The {noun} was {adjective}." -> positive | negative (the adjective decides)
category:   a word -> animal | fruit | color
Each label is one token of the SmolLM2 vocabulary (with its leading space), so a label's
probability is read from one next-token distribution.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

POSITIVE = "wonderful delightful excellent lovely charming brilliant pleasant superb marvellous splendid".split()
NEGATIVE = "terrible awful dreadful horrible boring disappointing miserable dull unpleasant shabby".split()
NOUNS = "dinner film hotel concert book garden journey service room play lecture party".split()
TEMPLATES = ["The {n} was {a}.", "I found the {n} {a}.", "What a {a} {n} that was.", "Honestly, the {n} seemed {a}."]
CATEGORIES = {
    "animal": "tiger horse rabbit eagle wolf camel donkey otter badger goat parrot whale".split(),
    "fruit": "apple banana cherry mango peach plum grape lemon melon pear apricot papaya".split(),
    "color": "red blue green yellow purple orange violet crimson scarlet turquoise magenta indigo".split(),
}


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass(frozen=True)
class ClassificationTask:
    name: str
    instruction: str
    input_name: str
    label_name: str
    labels: tuple[str, ...]
    examples: tuple[Example, ...]

    def split(self, n_pool: int, seed: int = 0) -> tuple[list[Example], list[Example]]:
        """(shot pool, test items), disjoint, shuffled by seed."""
        items = list(self.examples)
        random.Random(seed).shuffle(items)
        return items[:n_pool], items[n_pool:]


def sentiment_task() -> ClassificationTask:
    ex = [Example(t.format(n=n, a=a), label) for label, adjs in (("positive", POSITIVE), ("negative", NEGATIVE))
          for a in adjs for n in NOUNS[:3] for t in TEMPLATES[:2]]
    return ClassificationTask("sentiment", "Classify the sentiment of each review as positive or negative.",
                              "Review", "Sentiment", ("positive", "negative"), tuple(ex))


def category_task() -> ClassificationTask:
    ex = [Example(w, label) for label, words in CATEGORIES.items() for w in words]
    return ClassificationTask("category", "Say whether each word is an animal, a fruit or a color.",
                              "Word", "Category", tuple(CATEGORIES), tuple(ex))


TASKS = {"sentiment": sentiment_task, "category": category_task}
