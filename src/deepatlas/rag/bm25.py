"""Okapi BM25 (Robertson & Zaragoza 2009), our own; scores equal bm25s (method "lucene") and
rank-bm25 (BM25Okapi) on the same tokens (tests/rag/test_bm25.py).

For a query q and a document d of length |d| (tokens), avgdl the mean length, N documents,
n(t) the documents containing t, f(t, d) the count of t in d:

    score(q, d) = Σ_{t ∈ q} IDF(t) · f(t,d) (k1 + 1) / (f(t,d) + k1 (1 − b + b |d| / avgdl))

    IDF(t) = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))                    (Lucene; bm25s default)
    IDF(t) = ln((N − n(t) + 0.5) / (n(t) + 0.5)), negative values → ε · mean IDF   (rank-bm25)

Lucene (and bm25s) drop the constant factor (k1 + 1) from the numerator; it scales every score
equally and changes no ranking. We follow each reference in its own mode.

The per-(term, document) weights are computed once at indexing ("eager" scoring, as bm25s
does), stored term by term (a compressed sparse column matrix); a query adds up the columns of
its terms.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np

TOKEN = re.compile(r"(?u)\b\w\w+\b")   # bm25s' default token pattern: words of ≥ 2 characters
STOPWORDS = frozenset("""a an and are as at be but by for if in into is it no not of on or such that the their
then there these they this to was will with he she his her him i you we me my our your them from had have has
which who whom were been so all any would could should shall said unto""".split())
IDF_METHODS = ("lucene", "robertson")


def tokenize(text: str, stopwords: frozenset[str] = STOPWORDS) -> list[str]:
    """Lower-cased words of ≥ 2 characters, stopwords removed."""
    return [w for w in TOKEN.findall(text.lower()) if w not in stopwords]


class BM25:
    def __init__(self, k1: float = 1.5, b: float = 0.75, idf: str = "lucene", epsilon: float = 0.25):
        if idf not in IDF_METHODS:
            raise ValueError(f"idf {idf!r}; valid: {', '.join(IDF_METHODS)}")
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"k1={k1} must be ≥ 0 and b={b} in [0, 1]")
        self.k1, self.b, self.idf_method, self.epsilon = k1, b, idf, epsilon

    def index(self, corpus_tokens: Sequence[Sequence[str]]) -> "BM25":
        if len(corpus_tokens) == 0:
            raise ValueError("BM25.index: the corpus is empty; give at least one tokenised document")
        N = len(corpus_tokens)
        counts = [Counter(doc) for doc in corpus_tokens]
        dl = np.array([len(doc) for doc in corpus_tokens], dtype=np.float64)     # |d|  (N,)
        avgdl = max(dl.mean(), 1e-9)
        vocab: dict[str, int] = {}
        postings: dict[int, list[tuple[int, int]]] = {}
        for d, c in enumerate(counts):
            for term, f in c.items():
                postings.setdefault(vocab.setdefault(term, len(vocab)), []).append((d, f))
        n = np.array([len(postings[i]) for i in range(len(vocab))], dtype=np.float64)  # n(t)
        if self.idf_method == "lucene":
            # IDF(t) = ln(1 + (N − n + 0.5) / (n + 0.5))
            idf = np.log1p((N - n + 0.5) / (n + 0.5))
        else:
            # IDF(t) = ln((N − n + 0.5) / (n + 0.5)); negatives floored at ε · mean IDF (rank-bm25)
            idf = np.log((N - n + 0.5) / (n + 0.5))
            idf = np.where(idf < 0, self.epsilon * idf.mean(), idf)
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(n.astype(np.int64))
        docs = np.empty(indptr[-1], dtype=np.int32)
        weights = np.empty(indptr[-1], dtype=np.float32)
        norm = self.k1 * (1 - self.b + self.b * dl / avgdl)                      # (N,)
        numerator = 1.0 if self.idf_method == "lucene" else self.k1 + 1
        for t in range(len(vocab)):
            d, f = np.array(postings[t], dtype=np.int64).T
            s, e = indptr[t], indptr[t + 1]
            docs[s:e] = d
            # IDF(t) · f (k1 + 1) / (f + k1 (1 − b + b |d| / avgdl))      (Lucene: without k1 + 1)
            weights[s:e] = idf[t] * f * numerator / (f + norm[d])
        self.vocab, self.indptr, self.docs, self.weights = vocab, indptr, docs, weights
        self.n_docs, self.idf = N, idf
        return self

    def get_scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """(N,) float32 scores of every document (a repeated query term counts each time)."""
        terms = [t for t in map(self.vocab.get, query_tokens) if t is not None]
        if not terms:
            return np.zeros(self.n_docs, dtype=np.float32)
        # the postings of the query's terms, back to back, summed per document in one pass
        spans = [np.arange(self.indptr[t], self.indptr[t + 1]) for t in terms]
        at = np.concatenate(spans) if len(spans) > 1 else spans[0]
        return np.bincount(self.docs[at], weights=self.weights[at], minlength=self.n_docs).astype(np.float32)

    def search(self, query_tokens: Sequence[str], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """-> (ids, scores) of the k best documents, best first (ties: lower id first)."""
        scores = self.get_scores(query_tokens)
        return top_k(scores, k)

    def state(self) -> dict:
        return {"k1": self.k1, "b": self.b, "idf": self.idf_method, "epsilon": self.epsilon}


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype)
    part = np.argpartition(-scores, k - 1)[:k]
    order = np.lexsort((part, -scores[part]))
    ids = part[order]
    return ids.astype(np.int64), scores[ids]
