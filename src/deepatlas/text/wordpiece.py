"""WordPiece tokenizer as in BERT (Devlin et al. 2019; Wu et al. 2016, §4.1).

    text -> clean (drop NUL, U+FFFD, control chars; any whitespace -> " ")
         -> put spaces around CJK ideographs (Chinese text has no spaces between words)
         -> [uncased] strip accents (NFD, drop non-spacing marks Mn) and lowercase
         -> split on whitespace, and cut every punctuation character out as its own word
         -> each word: greedy longest-match-first against the vocab; pieces after the first
            carry the "##" continuation prefix; a word with an unmatched rest, or longer than
            max_input_chars_per_word characters, becomes [UNK] as a whole.

The character classes follow HF `tokenizers` (normalizers/bert.rs, pre_tokenizers/bert.rs), the
reference the tests compare with.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Iterable, Sequence

import regex

from deepatlas.text.pretokenize import SpecialTokenSplitter

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# CJK Unified Ideographs blocks, as BERT's tokenization.py `_is_chinese_char`, except that HF
# `tokenizers` starts the Extension E block at 0x2B920 (BERT: 0x2B820); we follow HF
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_ASCII_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")  # counted as punctuation, even $ + < = >
_WHITESPACE = regex.compile(r"\s")  # Unicode White_Space, as Rust's char::is_whitespace


def is_whitespace(c: str) -> bool:
    return bool(_WHITESPACE.match(c))


def is_control(c: str) -> bool:
    # \t \n \r are control characters but count as whitespace; Cc, Cf, Co, Cs are dropped
    # (HF's `is_other` leaves unassigned code points, Cn, in: they become [UNK])
    return c not in "\t\n\r" and unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs")


def is_punctuation(c: str) -> bool:
    return c in _ASCII_PUNCT or unicodedata.category(c).startswith("P")


def is_cjk(c: str) -> bool:
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def basic_tokenize(text: str, lowercase: bool = True, strip_accents: bool | None = None) -> list[str]:
    """BERT's BasicTokenizer: normalise, then split into words and single punctuation marks."""
    chars = []
    for c in text:
        if c == "\x00" or c == "\ufffd" or is_control(c):
            continue
        c = " " if is_whitespace(c) else c
        chars.append(f" {c} " if is_cjk(c) else c)
    text = "".join(chars)
    if strip_accents if strip_accents is not None else lowercase:
        # é = e + U+0301 after NFD; the combining mark (category Mn) is dropped
        text = "".join(c for c in unicodedata.normalize("NFD", text)
                       if unicodedata.category(c) != "Mn")
    if lowercase:
        text = text.lower()
    words: list[str] = []
    for chunk in text.split():
        start = 0
        for i, c in enumerate(chunk):
            if is_punctuation(c):
                if i > start:
                    words.append(chunk[start:i])
                words.append(c)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


class WordPiece:
    """vocab: token -> id (a BERT vocab.txt, one token per line, id = line number)."""

    def __init__(self, vocab: dict[str, int], unk_token: str = "[UNK]", prefix: str = "##",
                 max_input_chars_per_word: int = 100, lowercase: bool = True,
                 strip_accents: bool | None = None,
                 special_tokens: Sequence[str] = BERT_SPECIAL_TOKENS):
        if unk_token not in vocab:
            raise ValueError(f"unk_token {unk_token!r} is not in the vocab")
        self.vocab = dict(vocab)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.unk_token, self.prefix = unk_token, prefix
        self.max_chars = max_input_chars_per_word
        self.lowercase, self.strip_accents = lowercase, strip_accents
        self.special_tokens = [t for t in special_tokens if t in self.vocab]
        # special tokens written in the text ("[MASK]") stay whole, as HF's added tokens do
        self.split_specials = SpecialTokenSplitter(self.special_tokens)

    @classmethod
    def from_vocab_file(cls, path: str | Path, **kwargs) -> "WordPiece":
        lines = Path(path).read_text("utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return cls({token: i for i, token in enumerate(lines)}, **kwargs)

    def __len__(self) -> int:
        return len(self.vocab)

    def word_pieces(self, word: str) -> list[str]:
        """Greedy longest-match-first: take the longest vocab prefix, continue on the rest."""
        if len(word) > self.max_chars:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            if end == start:  # no prefix of the rest is in the vocab: the whole word is unknown
                return [self.unk_token]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for segment, is_special in self.split_specials(text):
            if is_special:
                tokens.append(segment)
                continue
            for word in basic_tokenize(segment, self.lowercase, self.strip_accents):
                tokens.extend(self.word_pieces(word))
        return tokens

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Text -> ids; add_special_tokens wraps them as BERT's input: [CLS] ... [SEP]."""
        ids = [self.vocab[t] for t in self.tokenize(text)]
        if add_special_tokens:
            ids = [self.vocab["[CLS]"]] + ids + [self.vocab["[SEP]"]]
        return ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Ids -> text: "##" pieces glued to the previous one (lossy: case, accents, spacing)."""
        out: list[str] = []
        for i in ids:
            token = self.id_to_token[int(i)]
            if skip_special_tokens and token in self.special_tokens:
                continue
            if token.startswith(self.prefix) and out:
                out[-1] += token[len(self.prefix):]
            else:
                out.append(token)
        return " ".join(out)
