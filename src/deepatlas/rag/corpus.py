"""Corpora for retrieval: the Austen novels and the KJV Bible by chapter, or a folder of the
user's own .txt/.md files. A document is one chapter (or one file) with its book and chapter.

Bad input is named: a missing folder, a folder without .txt/.md files, binary files (skipped,
with a note), empty files (skipped), and a folder whose every file was skipped.
"""
from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

BUILTIN = ("austen", "bible")
SUFFIXES = (".txt", ".md")
# "CHAPTER I", "Chapter 12", "CHAPTER XLI." on a line of its own
AUSTEN_CHAPTER = re.compile(r"^\s*chapter\s+([ivxlc]+|\d+)\.?\s*$", re.IGNORECASE | re.MULTILINE)
BIBLE_REF = re.compile(r"^([1-3]?[A-Z][A-Za-z]*?)(\d+):(\d+)$")


class CorpusError(ValueError):
    """A corpus that cannot be read: the message names what is wrong and what would work."""


@dataclass(frozen=True)
class Document:
    doc_id: str      # unique, e.g. "Pride & Prejudice/3" or "Ge/1" or "notes.md"
    book: str        # novel, Bible book abbreviation, or file name
    chapter: str     # chapter number as text ("" for a plain file)
    text: str

    @property
    def where(self) -> str:
        return f"{self.book}, chapter {self.chapter}" if self.chapter else self.book


def austen_documents(books: tuple[str, ...] | None = None) -> list[Document]:
    """One Document per chapter of the six novels (or of `books`, titles as in data.austen.NOVELS)."""
    from deepatlas.data.austen import austen_texts

    texts = austen_texts()
    if books is not None:
        unknown = [b for b in books if b not in texts]
        if unknown:
            raise CorpusError(f"unknown Austen novel(s) {unknown}; valid: {list(texts)}")
        texts = {b: texts[b] for b in books}
    docs = []
    for title, text in texts.items():
        marks = list(AUSTEN_CHAPTER.finditer(text))
        for i, m in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            body = text[m.end():end].strip()
            if body:
                docs.append(Document(f"{title}/{i + 1}", title, str(i + 1), body))
    return docs


def bible_documents(books: tuple[str, ...] | None = None) -> list[Document]:
    """One Document per chapter of the KJV (verses one per line), optionally only `books`
    (abbreviations as the `bible` command writes them: Ge, Exo, Ruth, Mat, ...)."""
    from deepatlas.data.bible import bible_verses

    chapters: dict[tuple[str, str], list[str]] = {}
    names: list[str] = []
    for ref, text in bible_verses():
        m = BIBLE_REF.match(ref.split()[0])
        if m is None:
            continue
        book, chapter, _ = m.groups()
        if book not in names:
            names.append(book)
        if books is None or book in books:
            chapters.setdefault((book, chapter), []).append(text)
    unknown = [b for b in books or () if b not in names]
    if unknown:
        raise CorpusError(f"unknown Bible book(s) {unknown}; valid: {', '.join(names)}")
    return [Document(f"{b}/{c}", b, c, "\n".join(v)) for (b, c), v in chapters.items()]


def is_binary(data: bytes) -> bool:
    """A NUL byte or bytes that are not UTF-8 mark a file as binary."""
    if b"\x00" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def folder_documents(folder: str | Path, warn=lambda msg: print(msg, file=sys.stderr)) -> list[Document]:
    """Every .txt/.md file under `folder` (recursively, sorted) as one Document each."""
    root = Path(folder)
    if not root.exists():
        raise CorpusError(f"corpus folder {folder} does not exist; give a folder of .txt/.md files "
                          f"or one of: {', '.join(BUILTIN)}")
    if not root.is_dir():
        raise CorpusError(f"corpus {folder} is a file, not a folder; put it in a folder and give the folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise CorpusError(f"corpus folder {folder} holds no .txt or .md files")
    docs, skipped = [], []
    for path in files:
        data = path.read_bytes()
        rel = str(path.relative_to(root))
        if is_binary(data):
            skipped.append(rel)
            warn(f"note: skipping {rel}: binary content (not UTF-8 text)")
            continue
        text = data.decode("utf-8").strip()
        if not text:
            skipped.append(rel)
            warn(f"note: skipping {rel}: empty")
            continue
        docs.append(Document(rel, rel, "", text))
    if not docs:
        raise CorpusError(f"corpus folder {folder}: all {len(files)} .txt/.md file(s) were binary or empty "
                          f"({', '.join(skipped[:5])})")
    return docs


def load_corpus(name: str) -> list[Document]:
    """"austen", "bible", or a folder path."""
    if name == "austen":
        return austen_documents()
    if name == "bible":
        return bible_documents()
    return folder_documents(name)


def corpus_checksum(docs: list[Document]) -> str:
    """SHA-256 over every document's id and text: any edit, addition or removal changes it."""
    h = hashlib.sha256()
    for d in docs:
        for part in (d.doc_id, d.book, d.chapter, d.text):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
    return h.hexdigest()
