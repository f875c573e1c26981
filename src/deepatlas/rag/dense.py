"""Dense retrieval: unit-length MiniLM embeddings in a FAISS index, scored by inner product
(= cosine similarity, Reimers & Gurevych 2019), exact or approximate.

    flat:  exact k-NN, score(q, d) = q · d over every d                     (IndexFlatIP)
    ivf:   k-means into `nlist` cells; a query scans its `nprobe` nearest cells (Jégou et al. 2011)
    hnsw:  a layered small-world graph searched greedily with a beam `ef_search` (Malkov & Yashunin 2018)

The approximate kinds trade recall@k against the exact index for speed (experiments/s1_rag.py).
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

KINDS = ("flat", "ivf", "hnsw")


class DenseIndex:
    def __init__(self, dim: int, kind: str = "flat", nlist: int = 64, nprobe: int = 8, hnsw_m: int = 32,
                 ef_search: int = 64):
        if kind not in KINDS:
            raise ValueError(f"index kind {kind!r}; valid: {', '.join(KINDS)}")
        self.dim, self.kind, self.nlist, self.nprobe = dim, kind, nlist, nprobe
        self.hnsw_m, self.ef_search = hnsw_m, ef_search
        self.index: faiss.Index | None = None

    def build(self, vectors: np.ndarray) -> "DenseIndex":
        """vectors (N, dim) float32, unit length."""
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim or len(x) == 0:
            raise ValueError(f"vectors of shape {x.shape}; need (N ≥ 1, {self.dim})")
        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif self.kind == "ivf":
            nlist = max(1, min(self.nlist, len(x) // 39))      # FAISS wants ≥ 39 points per centroid
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(x)
            index.nprobe = min(self.nprobe, nlist)
        else:
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.ef_search
        index.add(x)
        self.index = index
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, dim) -> scores (Q, k), ids (Q, k) best first (id -1 where fewer than k)."""
        if self.index is None:
            raise RuntimeError("DenseIndex.search before build() or load()")
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return self.index.search(q, min(k, self.index.ntotal))

    def save(self, path: str | Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: str | Path, kind: str = "flat") -> "DenseIndex":
        index = faiss.read_index(str(path))
        out = cls(index.d, kind)
        out.index = index
        return out

    def __len__(self) -> int:
        return 0 if self.index is None else self.index.ntotal
