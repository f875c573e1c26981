"""The on-disk retrieval index: build once, reload, rebuild when the corpus or the settings change.

    <folder>/manifest.json   {version, corpus_sha256, settings, n_chunks, files: {name: sha256}}
    <folder>/chunks.jsonl    one chunk per line (id, doc, book, chapter, text)
    <folder>/embeddings.npy  (N, 384) float32 MiniLM embeddings, unit length
    <folder>/dense.faiss     the exact inner-product FAISS index

`open_index` reuses the folder only when the corpus' SHA-256, the chunking settings and every
file's SHA-256 match the manifest; otherwise (an edited corpus, a truncated file) it rebuilds,
showing a progress bar while it embeds. BM25 is rebuilt from the chunks on load (a second).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deepatlas.data.cache import cache_dir, sha256_file
from deepatlas.rag.bm25 import BM25, tokenize
from deepatlas.rag.chunking import Chunk, chunk_documents
from deepatlas.rag.corpus import Document, corpus_checksum
from deepatlas.rag.dense import DenseIndex
from deepatlas.rag.hybrid import rrf

VERSION = 1
METHODS = ("bm25", "dense", "hybrid")
FILES = ("chunks.jsonl", "embeddings.npy", "dense.faiss")


@dataclass(frozen=True)
class IndexSettings:
    chunking: str = "sentence"
    size: int = 100          # words per chunk
    overlap: int = 20        # words shared by neighbouring fixed-size chunks
    encoder: str = "all-MiniLM-L6-v2"


def embed_texts(encoder, texts: list[str], batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """(N, dim) float32 embeddings, batched, with a progress bar on stderr."""
    from tqdm import tqdm

    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    bar = tqdm(total=len(texts), desc="embedding chunks", unit="chunk", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    step = batch_size * 8
    for start in range(0, len(texts), step):
        out[start:start + step] = encoder.encode(texts[start:start + step], batch_size=batch_size).numpy()
        bar.update(min(step, len(texts) - start))
    bar.close()
    return out


class Retriever:
    """BM25, dense (FAISS) and hybrid (RRF) search over one set of chunks."""

    def __init__(self, chunks: list[Chunk], embeddings: np.ndarray, encoder, dense: DenseIndex | None = None):
        self.chunks, self.embeddings, self.encoder = chunks, embeddings, encoder
        self.dense = dense or DenseIndex(embeddings.shape[1], "flat").build(embeddings)
        self.bm25 = BM25().index([tokenize(c.text) for c in chunks])

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        return self.encoder.encode(queries).numpy()

    def search(self, query: str, k: int = 5, method: str = "hybrid", pool: int = 50,
               rrf_k: int = 60, query_vector: np.ndarray | None = None) -> list[tuple[int, float]]:
        """[(chunk id, score)] best first. hybrid fuses the top `pool` of BM25 and of dense."""
        if method not in METHODS:
            raise ValueError(f"retrieval method {method!r}; valid: {', '.join(METHODS)}")
        if not query.strip():
            raise ValueError("the question is empty; ask something, e.g. \"Who married Elizabeth Bennet?\"")
        if k < 1:
            raise ValueError(f"k={k} must be ≥ 1")
        n = k if method != "hybrid" else max(pool, k)
        ranked = {}
        if method in ("bm25", "hybrid"):
            ids, scores = self.bm25.search(tokenize(query), n)
            ranked["bm25"] = [(int(i), float(s)) for i, s in zip(ids, scores) if s > 0]
        if method in ("dense", "hybrid"):
            q = query_vector if query_vector is not None else self.embed_queries([query])
            scores, ids = self.dense.search(q.reshape(1, -1), n)
            ranked["dense"] = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        if method != "hybrid":
            return ranked[method][:k]
        return rrf([[i for i, _ in ranked["bm25"]], [i for i, _ in ranked["dense"]]], k=rrf_k, top=k)


def _fingerprint(docs: list[Document], settings: IndexSettings) -> dict:
    return {"version": VERSION, "corpus_sha256": corpus_checksum(docs), "settings": asdict(settings)}


def index_folder(name: str, docs: list[Document], settings: IndexSettings) -> Path:
    """$DEEPATLAS_CACHE/rag/<name>-<hash of corpus + settings>."""
    key = hashlib.sha256(json.dumps(_fingerprint(docs, settings), sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() else "_" for ch in name)[-40:]
    return cache_dir("rag", f"{safe}-{key}")


def read_index(folder: Path, docs: list[Document], settings: IndexSettings) -> tuple[list[Chunk], np.ndarray] | None:
    """The stored chunks and embeddings, or None (with the reason on stderr) when stale or damaged."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        print(f"note: {manifest_path} is damaged; rebuilding the index", file=sys.stderr)
        return None
    want = _fingerprint(docs, settings)
    if any(manifest.get(key) != value for key, value in want.items()):
        print(f"note: the corpus or the index settings changed since {folder} was built; rebuilding",
              file=sys.stderr)
        return None
    for name in FILES:
        path = folder / name
        if not path.is_file() or sha256_file(path) != manifest.get("files", {}).get(name):
            print(f"note: {path} is missing or its checksum differs; rebuilding the index", file=sys.stderr)
            return None
    chunks = [Chunk(**json.loads(line)) for line in (folder / "chunks.jsonl").read_text().splitlines()]
    embeddings = np.load(folder / "embeddings.npy")
    if len(chunks) != manifest.get("n_chunks") or embeddings.shape[0] != len(chunks):
        return None
    return chunks, embeddings


def write_index(folder: Path, docs: list[Document], settings: IndexSettings, chunks: list[Chunk],
                embeddings: np.ndarray, dense: DenseIndex) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").unlink(missing_ok=True)      # a crash mid-write leaves no valid manifest
    tmp = folder / "chunks.jsonl.tmp"
    tmp.write_text("".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in chunks))
    os.replace(tmp, folder / "chunks.jsonl")
    np.save(folder / "embeddings.npy", embeddings)
    dense.save(folder / "dense.faiss")
    manifest = {**_fingerprint(docs, settings), "n_chunks": len(chunks),
                "files": {name: sha256_file(folder / name) for name in FILES}}
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, folder / "manifest.json")


def open_index(name: str, docs: list[Document], settings: IndexSettings | None = None, encoder=None,
               folder: Path | None = None, progress: bool = True,
               log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> tuple[Retriever, bool]:
    """-> (retriever, rebuilt). Reuses the folder's index when its checksums match, else builds it."""
    settings = settings or IndexSettings()
    if not docs:
        raise ValueError("the corpus has no documents")
    if encoder is None:
        from deepatlas.models.sentence_encoder import load_minilm

        encoder = load_minilm()
    folder = folder or index_folder(name, docs, settings)
    stored = read_index(folder, docs, settings)
    if stored is not None:
        chunks, embeddings = stored
        return Retriever(chunks, embeddings, encoder, DenseIndex.load(folder / "dense.faiss")), False
    chunks = chunk_documents(docs, settings.chunking, settings.size, settings.overlap)
    log(f"building the index of {name}: {len(docs)} documents, {len(chunks)} chunks -> {folder}")
    embeddings = embed_texts(encoder, [c.text for c in chunks], progress=progress)
    retriever = Retriever(chunks, embeddings, encoder)
    write_index(folder, docs, settings, chunks, embeddings, retriever.dense)
    return retriever, True
