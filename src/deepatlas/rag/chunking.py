"""Chunking: documents -> passages for retrieval.

fixed:      windows of `size` words that start every `size - overlap` words (the last window may
            be shorter); consecutive windows share `overlap` words, so a fact cut by one window
            boundary is whole in the neighbouring window.
sentence:   whole sentences packed greedily up to `size` words (a longer sentence is its own chunk).
paragraph:  blank-line-separated paragraphs packed greedily up to `size` words.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from deepatlas.rag.corpus import Document

METHODS = ("fixed", "sentence", "paragraph")
# a sentence ends at . ! ? (optionally followed by quotes/brackets) before whitespace, or at a blank
# line; a single newline is a wrapped line (Gutenberg texts wrap at ~70 characters)
SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+|\n\s*\n")


@dataclass(frozen=True)
class Chunk:
    chunk_id: int
    doc_id: str
    book: str
    chapter: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.book}, chapter {self.chapter}" if self.chapter else self.book

    def to_json(self) -> dict:
        return asdict(self)


def fixed_windows(words: list[str], size: int, overlap: int) -> list[list[str]]:
    """Word windows of `size` with `overlap` shared words; every word is in at least one window."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"chunk size {size} and overlap {overlap}: need size ≥ 1 and 0 ≤ overlap < size")
    stride = size - overlap
    out = []
    for start in range(0, max(len(words), 1), stride):
        out.append(words[start:start + size])
        if start + size >= len(words):
            break
    return [w for w in out if w]


def pack(pieces: list[str], size: int) -> list[str]:
    """Join consecutive pieces while the total stays ≤ size words."""
    out, cur, n = [], [], 0
    for piece in pieces:
        k = len(piece.split())
        if cur and n + k > size:
            out.append(" ".join(cur))
            cur, n = [], 0
        cur.append(piece)
        n += k
    if cur:
        out.append(" ".join(cur))
    return out


def split_text(text: str, method: str = "sentence", size: int = 100, overlap: int = 20) -> list[str]:
    if method == "fixed":
        return [" ".join(w) for w in fixed_windows(text.split(), size, overlap)]
    if method == "sentence":
        pieces = [s.strip() for s in SENTENCE_END.split(text)]
    elif method == "paragraph":
        pieces = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    else:
        raise ValueError(f"chunking method {method!r}; valid: {', '.join(METHODS)}")
    if size < 1:
        raise ValueError(f"chunk size {size} must be ≥ 1 word")
    return pack([" ".join(p.split()) for p in pieces if p.strip()], size)


def chunk_documents(docs: list[Document], method: str = "sentence", size: int = 100,
                    overlap: int = 20) -> list[Chunk]:
    """All documents' chunks, numbered 0.. in document order, each knowing its book and chapter."""
    chunks: list[Chunk] = []
    for d in docs:
        for text in split_text(d.text, method, size, overlap):
            chunks.append(Chunk(len(chunks), d.doc_id, d.book, d.chapter, text))
    return chunks
