"""Hybrid retrieval by reciprocal-rank fusion (Cormack, Clarke & Büttcher 2009):

    RRF(d) = Σ_{r ∈ rankings} 1 / (k + rank_r(d)),     rank 1 = best, k = 60

A document missing from a ranking adds nothing for it. Only ranks are fused, so BM25 scores and
cosine similarities need no common scale.
"""
from __future__ import annotations

from typing import Sequence


def rrf(rankings: Sequence[Sequence[int]], k: int = 60, top: int | None = None) -> list[tuple[int, float]]:
    """rankings: lists of ids, best first -> [(id, fused score)], best first (ties: smaller id)."""
    if k < 0:
        raise ValueError(f"RRF k={k} must be ≥ 0")
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            # 1 / (k + rank_r(d))
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    out = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
    return out if top is None else out[:top]
