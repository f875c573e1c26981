"""Pretraining-data curation (map place L12): deduplication, quality filters, PII scrubbing.

- Exact deduplication: documents equal after normalisation (NFKC, lower case, punctuation
  dropped, whitespace collapsed) keep their first copy (a hash set of the normalised text).
- Near duplicates, MinHash (Broder 1997) with LSH banding (Indyk & Motwani 1998; Leskovec et al.,
  Mining of Massive Datasets §3.4): a document is its set S of word n-gram shingles;
      h_i(x) = ((a_i · x + b_i) mod p) mod 2³²,   p = 2⁶¹ − 1,  x = 32-bit hash of a shingle
      sig_i(S) = min_{x ∈ S} h_i(x),     P[sig_i(A) = sig_i(B)] = J(A, B) = |A ∩ B| / |A ∪ B|
  so the fraction of equal signature rows estimates the Jaccard similarity. Banding splits the
  k = b·r rows into b bands of r; two documents become candidates when any band is equal,
      P[candidate] = 1 − (1 − J^r)^b,  an S-curve rising near J ≈ (1/b)^(1/r),
  and candidates are confirmed by their estimated J ≥ threshold.
- Quality (after Gopher, Rae et al. 2021 App. A): word count, mean word length, symbol-to-word
  ratio, fraction of words with a letter, duplicate-line fraction, top-2-gram character
  fraction, and a small-LM perplexity filter (a character trigram LM of reference text).
- PII: e-mail addresses, phone numbers and IPv4 addresses replaced by <EMAIL>, <PHONE>, <IP>.
"""
from __future__ import annotations

import hashlib
import math
import re
import struct
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

MERSENNE = (1 << 61) - 1
MAX_HASH = (1 << 32) - 1
_PUNCT = re.compile(r"[^\w\s]")
_WS = re.compile(r"\s+")


# ---- exact deduplication --------------------------------------------------------------------
def normalize_for_dedup(text: str) -> str:
    """NFKC, lower case, punctuation dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _WS.sub(" ", _PUNCT.sub("", text)).strip()


def exact_dedup(docs: Sequence[str]) -> list[int]:
    """Indices of the documents kept: the first of each normalised-equal group."""
    seen, kept = set(), []
    for i, doc in enumerate(docs):
        key = hashlib.sha1(normalize_for_dedup(doc).encode()).digest()
        if key not in seen:
            seen.add(key)
            kept.append(i)
    return kept


# ---- MinHash + LSH -------------------------------------------------------------------------
def shingles(text: str, n: int = 5) -> set[str]:
    """Word n-grams of the normalised text (the whole text if it has fewer than n words)."""
    words = normalize_for_dedup(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """|A ∩ B| / |A ∪ B| (1 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 1.0


def hash32(s: str) -> int:
    """The first 4 bytes of SHA-1, little endian (datasketch's sha1_hash32)."""
    return struct.unpack("<I", hashlib.sha1(s.encode("utf8")).digest()[:4])[0]


class MinHasher:
    """k universal hash functions h_i(x) = ((a_i x + b_i) mod p) mod 2³² (a_i, x < 2³²: no overflow)."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        if num_perm < 1:
            raise ValueError(f"num_perm {num_perm}; valid: ≥ 1")
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, MAX_HASH, num_perm, dtype=np.uint64)
        self.b = rng.integers(0, MAX_HASH, num_perm, dtype=np.uint64)
        self.num_perm = num_perm

    def signature(self, items: Iterable[str]) -> np.ndarray:
        """(num_perm,) uint64: sig_i = min over the set of h_i(x); all MAX_HASH for an empty set."""
        x = np.array([hash32(s) for s in items], dtype=np.uint64)
        if x.size == 0:
            return np.full(self.num_perm, MAX_HASH, dtype=np.uint64)
        h = (self.a[:, None] * x[None, :] + self.b[:, None]) % np.uint64(MERSENNE)   # (k, |S|)
        return (h & np.uint64(MAX_HASH)).min(axis=1)


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of equal signature rows, an unbiased estimate of J(A, B)."""
    return float((sig_a == sig_b).mean())


def lsh_candidate_probability(j: float, bands: int, rows: int) -> float:
    """1 − (1 − J^r)^b."""
    return 1.0 - (1.0 - j ** rows) ** bands


class LSHIndex:
    """Banding: b bands of r rows; documents sharing any band's bucket are candidate pairs."""

    def __init__(self, bands: int, rows: int):
        if bands < 1 or rows < 1:
            raise ValueError(f"bands {bands}, rows {rows}; valid: ≥ 1 each")
        self.bands, self.rows = bands, rows
        self.buckets: list[dict[bytes, list]] = [defaultdict(list) for _ in range(bands)]

    def _keys(self, sig: np.ndarray) -> list[bytes]:
        if len(sig) < self.bands * self.rows:
            raise ValueError(f"signature of {len(sig)} rows < bands·rows = {self.bands * self.rows}")
        return [np.asarray(sig[i * self.rows:(i + 1) * self.rows], dtype=np.uint64).tobytes()
                for i in range(self.bands)]

    def query(self, sig: np.ndarray) -> set:
        """Keys already inserted that share a band with `sig`."""
        return {key for band, k in zip(self.buckets, self._keys(sig)) for key in band.get(k, [])}

    def insert(self, key, sig: np.ndarray) -> None:
        for band, k in zip(self.buckets, self._keys(sig)):
            band[k].append(key)


def near_dedup(docs: Sequence[str], threshold: float = 0.7, num_perm: int = 128, bands: int = 32,
               shingle: int = 5, seed: int = 1) -> tuple[list[int], list[tuple[int, int, float]]]:
    """-> (kept indices, [(dropped, kept_match, estimated J)]): a document is dropped when an
    earlier kept one is an LSH candidate with estimated Jaccard ≥ threshold."""
    if num_perm % bands:
        raise ValueError(f"num_perm {num_perm} must be a multiple of bands {bands}")
    hasher, index = MinHasher(num_perm, seed), LSHIndex(bands, num_perm // bands)
    sigs: dict[int, np.ndarray] = {}
    kept, dropped = [], []
    for i, doc in enumerate(docs):
        sig = hasher.signature(shingles(doc, shingle))
        match = max(((estimate_jaccard(sig, sigs[j]), j) for j in index.query(sig)), default=(0.0, -1))
        if match[0] >= threshold:
            dropped.append((i, match[1], match[0]))
            continue
        sigs[i] = sig
        index.insert(i, sig)
        kept.append(i)
    return kept, dropped


# ---- quality filters -----------------------------------------------------------------------
@dataclass
class QualityRules:
    """Gopher-style thresholds (Rae et al. 2021, App. A; word bounds lowered for paragraphs)."""
    min_words: int = 5
    max_words: int = 100_000
    min_mean_word_len: float = 3.0
    max_mean_word_len: float = 10.0
    max_symbol_ratio: float = 0.1       # ('#', '...', '…') per word
    min_alpha_words: float = 0.8        # words holding at least one letter
    max_dup_line_frac: float = 0.3      # lines that repeat an earlier line
    max_top_2gram_frac: float = 0.2     # characters in the most frequent word 2-gram
    max_nonascii_frac: float = 0.1


def quality_stats(text: str) -> dict[str, float]:
    """The statistics QualityRules bound."""
    words = text.split()
    n = max(len(words), 1)
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    seen, dup = set(), 0
    for line in lines:
        dup += line in seen
        seen.add(line)
    grams = Counter(zip(words, words[1:]))
    top = grams.most_common(1)
    top_chars = top[0][1] * (len(top[0][0][0]) + len(top[0][0][1])) if top and top[0][1] > 1 else 0
    return {
        "words": len(words),
        "mean_word_len": sum(len(w) for w in words) / n,
        "symbol_ratio": (text.count("#") + text.count("...") + text.count("…")) / n,
        "alpha_words": sum(any(c.isalpha() for c in w) for w in words) / n,
        "dup_line_frac": dup / max(len(lines), 1),
        "top_2gram_frac": top_chars / max(sum(len(w) for w in words), 1),
        "nonascii_frac": sum(ord(c) > 127 for c in text) / max(len(text), 1),
    }


def quality_failures(text: str, rules: QualityRules = QualityRules()) -> list[str]:
    """Names of the rules `text` breaks (empty list = it passes)."""
    s, r, out = quality_stats(text), rules, []
    if not r.min_words <= s["words"] <= r.max_words:
        out.append("words")
    if not r.min_mean_word_len <= s["mean_word_len"] <= r.max_mean_word_len:
        out.append("mean_word_len")
    checks = [("symbol_ratio", s["symbol_ratio"] > r.max_symbol_ratio),
              ("alpha_words", s["alpha_words"] < r.min_alpha_words),
              ("dup_line_frac", s["dup_line_frac"] > r.max_dup_line_frac),
              ("top_2gram_frac", s["top_2gram_frac"] > r.max_top_2gram_frac),
              ("nonascii_frac", s["nonascii_frac"] > r.max_nonascii_frac)]
    return out + [name for name, bad in checks if bad]


class CharTrigramLM:
    """p(c | a b) = (count(abc) + k) / (count(ab) + k·|V|): a small LM for the perplexity filter."""

    def __init__(self, texts: Iterable[str], k: float = 0.1):
        self.k, self.tri, self.bi, vocab = k, Counter(), Counter(), set()
        for t in texts:
            t = "\x02\x02" + t
            vocab.update(t)
            for i in range(2, len(t)):
                self.tri[t[i - 2:i + 1]] += 1
                self.bi[t[i - 2:i]] += 1
        self.V = len(vocab) + 1

    def perplexity(self, text: str) -> float:
        """exp(−(1/N) Σ log p(c_i | c_{i−2} c_{i−1}))."""
        t = "\x02\x02" + text
        nll = -sum(math.log((self.tri[t[i - 2:i + 1]] + self.k) / (self.bi[t[i - 2:i]] + self.k * self.V))
                   for i in range(2, len(t)))
        return math.exp(nll / max(len(text), 1))


# ---- PII -------------------------------------------------------------------------------------
EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# a phone number: optional +country, then 9-11 more digits in groups split by spaces, dots,
# dashes or a parenthesised area code; bare runs of digits (years, sums) are not phone numbers
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?![\w-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.]|\.\d)")
PII_PATTERNS = {"EMAIL": EMAIL, "IP": IPV4, "PHONE": PHONE}


def find_pii(text: str) -> list[tuple[str, str]]:
    """[(kind, matched text)] in the order EMAIL, IP, PHONE."""
    return [(kind, m.group()) for kind, pat in PII_PATTERNS.items() for m in pat.finditer(text)]


def scrub_pii(text: str) -> tuple[str, Counter]:
    """Replace each e-mail, IP and phone number by <EMAIL>, <IP>, <PHONE> -> (text, counts)."""
    counts: Counter = Counter()
    for kind, pat in PII_PATTERNS.items():
        text, n = pat.subn(f"<{kind}>", text)
        counts[kind] += n
    return text, counts
