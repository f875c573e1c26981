"""Before BPE sees text: special tokens split out, words split by a regex, bytes made printable.

GPT-2 (Radford et al. 2019, §2.2) runs BPE on UTF-8 *bytes* so that any string can be encoded
without an unknown token, and first splits text into word-like pieces with a regex so merges
never cross a letter/digit/punctuation boundary ("dog." and "dog!" share the token "dog").
The 256 bytes are shown as 256 printable unicode characters so that vocab.json / merges.txt
stay readable text: printable Latin-1 bytes stand for themselves, the rest are shifted to
U+0100 and up (space 0x20 becomes "Ġ", newline 0x0A becomes "Ċ").
"""
from __future__ import annotations

import functools
from typing import Iterator, Sequence

import regex  # the stdlib `re` has no \p{L} / \p{N} unicode classes

# GPT-2's pre-tokenisation regex (openai/gpt-2 encoder.py; HF `pre_tokenizers.ByteLevel`):
# English contractions, an optional space + letters, an optional space + digits, an optional
# space + other symbols, whitespace not followed by a non-space (so " word" keeps its space),
# and any other whitespace.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Pre-tokenisers as a sequence of splitting regexes; each regex splits every piece the previous
# one produced, keeping both its matches and the gaps between them ("isolated" splitting).
# "smollm": SmolLM2's tokenizer.json is Sequence[Digits(individual_digits=True), ByteLevel] and
# llama.cpp's `tokenizer.ggml.pre = "smollm"` is ["\p{N}", GPT-2 regex]: each digit stands alone.
PRETOKENIZERS: dict[str, tuple[str, ...]] = {
    "gpt2": (GPT2_PATTERN,),
    "default": (GPT2_PATTERN,),  # llama.cpp's name for the GPT-2 regex in `tokenizer.ggml.pre`
    "smollm": (r"\p{N}", GPT2_PATTERN),
}


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (openai/gpt-2 encoder.py `bytes_to_unicode`)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table, shift = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:  # control bytes, space, DEL, NBSP, soft hyphen -> U+0100, U+0101, ...
            table[b] = chr(256 + shift)
            shift += 1
    return table


@functools.lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def resolve_pretokenizer(pretokenizer: str | Sequence[str]) -> tuple[str, ...]:
    """A preset name ("gpt2", "smollm"), one regex, or a sequence of regexes -> regexes."""
    if isinstance(pretokenizer, str):
        if pretokenizer in PRETOKENIZERS:
            return PRETOKENIZERS[pretokenizer]
        if regex.fullmatch(r"[a-z0-9_\-]+", pretokenizer):  # looks like a name, not a regex
            raise ValueError(f"unknown pretokenizer {pretokenizer!r}; valid names: "
                             f"{', '.join(PRETOKENIZERS)}, or pass a regex pattern")
        return (pretokenizer,)
    return tuple(pretokenizer)


class SpecialTokenSplitter:
    """Cut special tokens ("<|endoftext|>", "[MASK]") out of text whole, before anything else."""

    def __init__(self, special_tokens: Sequence[str]):
        # longest first, so "<|im_start|>" wins over a special token that is its prefix
        specials = sorted(special_tokens, key=len, reverse=True)
        self.regex = (regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")")
                      if specials else None)

    def __call__(self, text: str) -> Iterator[tuple[str, bool]]:
        """(segment, is_special) in order."""
        if self.regex is None:
            if text:
                yield text, False
            return
        for i, part in enumerate(self.regex.split(text)):
            if part:  # odd parts of split() are the captured special tokens
                yield part, i % 2 == 1


class PreTokenizer:
    """Split text into pieces: special tokens whole, everything else through the regexes."""

    def __init__(self, pretokenizer: str | Sequence[str] = "gpt2", special_tokens: Sequence[str] = ()):
        self.patterns = resolve_pretokenizer(pretokenizer)
        self.regexes = [regex.compile(p) for p in self.patterns]
        self.special_tokens = list(special_tokens)
        self.split_specials = SpecialTokenSplitter(self.special_tokens)

    def words(self, text: str) -> list[str]:
        """Pieces of `text` (no special tokens in it) after all the splitting regexes."""
        pieces = [text]
        for rx in self.regexes:
            out: list[str] = []
            for piece in pieces:
                if rx.pattern == GPT2_PATTERN:  # its last branch \s+ leaves no gaps: findall is lossless
                    out.extend(rx.findall(piece))
                    continue
                start = 0
                for m in rx.finditer(piece):  # keep the gaps between matches as pieces too
                    if m.start() > start:
                        out.append(piece[start:m.start()])
                    if m.end() > m.start():
                        out.append(m.group())
                    start = m.end()
                if start < len(piece):
                    out.append(piece[start:])
            pieces = out
        return pieces
