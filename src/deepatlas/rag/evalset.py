"""A question set generated deterministically from the corpus, with answers and supporting text.

Two kinds, both extracted by patterns from the text itself (no hand labels, same seed -> same set):

  cloze  a sentence of 10–40 words from a chapter with one name blanked out
         ("Fill in the missing name: “… said ____ to her sister …”"); a *name* is a capitalised
         word seen capitalised ≥ 3 times in the corpus and never in lower case. Answer: the name;
         support: the sentence.
  fact   KJV genealogy facts: "And Seth lived an hundred and five years, and begat Enos" gives
         "How many years did Seth live before he begat Enos?" (answer "an hundred and five") and
         "Whom did Seth beget …?" (answer "Enos"); "all the days of X were N years" gives
         "How many years were all the days of X?". Support: the clause.

A retrieved chunk *supports* a question when its text contains the support (whitespace and case
normalised). Each question's split ("dev" or "test") comes from a hash of its text: about
`test_fraction` of them are held out; settings are chosen on dev only.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass

from deepatlas.rag.chunking import SENTENCE_END
from deepatlas.rag.corpus import Document

NAME = re.compile(r"\b[A-Z][a-z]{2,}\b")
NOT_NAMES = frozenset("""Mr Mrs Miss Lady Sir Lord God The And But She Her His They There This That What When
Chapter Lord LORD Then Thou Thee Thy Yes Not Sunday Monday Tuesday Wednesday Thursday Friday Saturday January
February March April May June July August September October November December Christmas English""".split())
LIVED = re.compile(r"(?:And )?(\w+) lived ([a-z][a-z ]+?) years,? and begat (\w+)")
ALL_DAYS = re.compile(r"all the days of (\w+) were ([a-z][a-z ]+?) years")
SPLITS = ("dev", "test")


@dataclass(frozen=True)
class Question:
    qid: str
    kind: str              # cloze | fact
    question: str
    answers: tuple[str, ...]
    support: str           # text a supporting passage contains
    doc_id: str
    split: str             # dev | test (held out)

    def to_json(self) -> dict:
        return asdict(self)


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def supports(chunk_text: str, q: Question) -> bool:
    return normalize(q.support) in normalize(chunk_text)


def answer_correct(answer: str, q: Question) -> bool:
    """The normalised answer text contains one of the normalised answer strings (as words)."""
    a = f" {normalize(answer)} "
    return any(f" {normalize(x)} " in a for x in q.answers)


def _split(text: str, test_fraction: float) -> str:
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_fraction else "dev"


def corpus_names(docs: list[Document]) -> set[str]:
    capital, lower = Counter(), set()
    for d in docs:
        capital.update(NAME.findall(d.text))
        lower.update(w for w in re.findall(r"\b[a-z]{3,}\b", d.text))
    return {w for w, n in capital.items() if n >= 3 and w.lower() not in lower and w not in NOT_NAMES}


def cloze_questions(docs: list[Document], per_doc: int, rng: random.Random, test_fraction: float) -> list[Question]:
    names = corpus_names(docs)
    out = []
    for d in docs:
        candidates = []
        for sentence in SENTENCE_END.split(d.text):
            sentence = " ".join(sentence.split())
            words = sentence.split()
            if not 10 <= len(words) <= 40:
                continue
            # the blank is a name that is not the sentence's first word and occurs once in it
            found = [m for m in NAME.finditer(sentence) if m.start() > 0 and m.group() in names
                     and sentence.count(m.group()) == 1]
            if found:
                candidates.append((sentence, found[0]))
        for sentence, m in rng.sample(candidates, min(per_doc, len(candidates))):
            blanked = sentence[:m.start()] + "____" + sentence[m.end():]
            text = f'Fill in the missing name: "{blanked}"'
            out.append(Question("", "cloze", text, (m.group(),), sentence, d.doc_id, _split(text, test_fraction)))
    return out


def fact_questions(docs: list[Document], test_fraction: float) -> list[Question]:
    out, seen = [], set()
    for d in docs:
        for m in LIVED.finditer(d.text):
            who, years, son = m.groups()
            for text, answer in ((f"How many years did {who} live before he begat {son}?", years),
                                 (f"Whom did {who} beget when he had lived {years} years?", son)):
                if text not in seen:
                    seen.add(text)
                    out.append(Question("", "fact", text, (answer,), m.group(0), d.doc_id,
                                        _split(text, test_fraction)))
        for m in ALL_DAYS.finditer(d.text):
            who, years = m.groups()
            text = f"How many years were all the days of {who}?"
            if text not in seen:
                seen.add(text)
                out.append(Question("", "fact", text, (years,), m.group(0), d.doc_id, _split(text, test_fraction)))
    return out


def make_questions(docs: list[Document], seed: int = 0, per_doc: int = 2, max_questions: int | None = None,
                   test_fraction: float = 0.4) -> list[Question]:
    """Cloze questions from every document plus KJV genealogy facts, shuffled by `seed`, numbered."""
    rng = random.Random(seed)
    qs = fact_questions(docs, test_fraction) + cloze_questions(docs, per_doc, rng, test_fraction)
    rng.shuffle(qs)
    if max_questions is not None:
        qs = qs[:max_questions]
    return [Question(f"q{i:04d}", q.kind, q.question, q.answers, q.support, q.doc_id, q.split)
            for i, q in enumerate(qs)]
