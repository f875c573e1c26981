"""Character-level tokenizer: one token per Unicode code point seen in the training text.

The simplest tokenizer (char-RNN, Karpathy 2015; the tiny-shakespeare GPTs): no merges, a
vocabulary of the distinct characters sorted by code point, and ids = positions in it. It
cannot encode a character it has not seen, and says which one.
"""
from __future__ import annotations

from typing import Iterable


class UnknownCharacterError(KeyError, ValueError):
    """A character outside the vocabulary (a KeyError for lookups, a ValueError for callers)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


class CharTokenizer:
    """chars: the vocabulary, id i is chars[i]."""

    def __init__(self, chars: Iterable[str]):
        self.chars = list(chars)
        if any(len(c) != 1 for c in self.chars):
            raise ValueError(f"every vocabulary entry must be one character, got "
                             f"{[c for c in self.chars if len(c) != 1][:5]}")
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("the vocabulary lists a character twice")
        self.char_to_id = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Vocabulary = the distinct characters of `text`, sorted by code point."""
        return cls(sorted(set(text)))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.char_to_id[c] for c in text]
        except KeyError as err:
            c = err.args[0]
            raise UnknownCharacterError(f"character {c!r} (U+{ord(c):04X}) at position {text.index(c)} is not in "
                           f"the vocabulary of {len(self)} characters; build the tokenizer from "
                           "text that contains it") from None

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            if not 0 <= int(i) < len(self.chars):
                raise ValueError(f"id {i} is outside the vocabulary 0..{len(self.chars) - 1}")
            out.append(self.chars[int(i)])
        return "".join(out)
