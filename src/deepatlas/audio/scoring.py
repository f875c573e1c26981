"""Word and character error rates (Levenshtein 1966 distance over words or characters).

    WER = (substitutions + deletions + insertions) / reference words,  summed over utterances
    (so a long utterance counts more than a short one, as in the usual corpus-level WER)

Transcripts are compared after `normalise`: lower case, punctuation dropped (apostrophes kept
inside words), hyphens to spaces, and a few spelling variants of the same word made one
(the reference transcripts spell titles out: "mister"; Whisper writes "Mr.").
"""
from __future__ import annotations

import re
from typing import Sequence

SAME_WORD = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint"}


def normalise(text: str) -> str:
    text = text.lower().replace("-", " ").replace("’", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(SAME_WORD.get(w, w) for w in words if w)


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Fewest substitutions, deletions and insertions turning ref into hyp (one DP row at a time)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def error_rate(refs: Sequence[str], hyps: Sequence[str], unit: str = "word", norm: bool = True) -> float:
    """Corpus WER (unit="word") or CER (unit="char"): total edits / total reference units."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if unit not in ("word", "char"):
        raise ValueError(f"unit={unit!r}; valid: word, char")
    edits = total = 0
    for ref, hyp in zip(refs, hyps):
        if norm:
            ref, hyp = normalise(ref), normalise(hyp)
        r, h = (ref.split(), hyp.split()) if unit == "word" else (list(ref), list(hyp))
        edits += edit_distance(r, h)
        total += len(r)
    return edits / max(total, 1)
