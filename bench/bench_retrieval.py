"""Retrieval, BM25 and constrained decoding speed (S1, S2).

* dense index build: our MiniLM (deepatlas BERT) embedding 128 chunks of Genesis + the exact
  FAISS index, vs sentence-transformers encoding the same chunks into the same FAISS index
  (goal ≥ 1.0; the embeddings are checked equal to 1e-4 first).
* dense queries/s: embed 64 questions and search an index of 128 chunks, ours vs sentence-transformers (goal ≥ 1.0).
* BM25 query time: 200 questions over the chunks, our numpy BM25 vs bm25s (same tokens, same
  scores; bm25s is the peer; goal ≥ 0.5, the ratio is reported).
* constrained decoding: seconds per token of SmolLM2 greedy decoding under the tool-call schema
  (warm mask cache) vs the same loop without the constraint (goal: ≤ 1.3× → ratio ≥ 0.77).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from bench.common import interleaved_median_times, result


@functools.lru_cache(maxsize=1)
def _setup():
    from deepatlas.models.sentence_encoder import load_minilm, minilm_dir
    from deepatlas.rag.chunking import chunk_documents
    from deepatlas.rag.corpus import bible_documents
    from deepatlas.rag.evalset import make_questions
    from sentence_transformers import SentenceTransformer

    docs = bible_documents(("Ge",))
    chunks = [c.text for c in chunk_documents(docs, "sentence", 60)]
    questions = [q.question for q in make_questions(docs, per_doc=4)]
    return load_minilm(), SentenceTransformer(str(minilm_dir()), device="cpu"), chunks, questions


def _flat(vectors: np.ndarray):
    from deepatlas.rag.dense import DenseIndex

    return DenseIndex(vectors.shape[1], "flat").build(vectors)


def dense_index_build() -> dict:
    ours, st, chunks, _ = _setup()
    texts = chunks[:128]
    a, b = ours.encode(texts).numpy(), st.encode(texts, batch_size=32, normalize_embeddings=True)
    if not np.allclose(a, b, atol=1e-4):
        raise AssertionError(f"embeddings differ: max |Δ| = {np.abs(a - b).max():.2e}")
    times = interleaved_median_times({"ours": lambda: _flat(ours.encode(texts).numpy()),
                                      "st": lambda: _flat(st.encode(texts, batch_size=32, normalize_embeddings=True))},
                                     warmup=0, repeats=3)   # the equality check above warmed both
    return result("dense_index_build_128_chunks", "s", times["ours"], times["st"],
                  "sentence-transformers encode + same FAISS IndexFlatIP", goal=1.0)


def dense_queries_per_s() -> dict:
    ours, st, chunks, questions = _setup()
    index = _flat(ours.encode(chunks[:128]).numpy())
    qs = questions[:64]
    times = interleaved_median_times({"ours": lambda: index.search(ours.encode(qs).numpy(), 5),
                                      "st": lambda: index.search(st.encode(qs, batch_size=32,
                                                                           normalize_embeddings=True), 5)},
                                     warmup=1, repeats=3)
    return result("dense_queries_per_s", "queries/s", len(qs) / times["ours"], len(qs) / times["st"],
                  "sentence-transformers encode + same FAISS search", goal=1.0, higher_is_better=True)


def bm25_query_time() -> dict:
    import bm25s

    from deepatlas.rag.bm25 import BM25, tokenize

    _, _, chunks, questions = _setup()
    corpus = [tokenize(c) for c in chunks]
    queries = [tokenize(q) for q in questions[:200]]
    ours = BM25().index(corpus)
    ref = bm25s.BM25()
    ref.index(corpus, show_progress=False)
    for q in queries[:20]:
        np.testing.assert_allclose(ours.get_scores(q), ref.get_scores(q), rtol=1e-5, atol=1e-6)

    def run_ref():
        return [np.argsort(-ref.get_scores(q))[:10] for q in queries]

    times = interleaved_median_times({"ours": lambda: [ours.search(q, 10) for q in queries], "ref": run_ref},
                                     warmup=1, repeats=5)
    return result(f"bm25_{len(queries)}_queries_{len(chunks)}_chunks", "s", times["ours"], times["ref"],
                  "bm25s get_scores + top-10", goal=0.5)


def constrained_decoding_cost() -> dict:
    from deepatlas.agents.loop import Agent
    from deepatlas.agents.tools import answer_tool, calculator_tool, python_tool
    from deepatlas.chat.session import ChatModel, find_gguf
    from deepatlas.generation.constrained import generate_json, guided_generate

    chat = ChatModel.load(find_gguf())
    tools = {t.name: t for t in (calculator_tool(), python_tool(), answer_tool())}
    agent = Agent(chat, tools, constrained=True)
    ids = chat.prompt_ids(agent.messages("A box holds 84 pencils. How many pencils are in 4 boxes?"))
    constraint = agent.constraint()
    with torch.inference_mode():
        text, _ = generate_json(chat.model, chat.tokenizer, ids, constraint, 48)    # warms the mask cache
        n = len(chat.tokenizer.encode(text))
        times = interleaved_median_times({
            "constrained": lambda: generate_json(chat.model, chat.tokenizer, ids, constraint, 48),
            "plain": lambda: guided_generate(chat.model, ids, n)}, warmup=1, repeats=3)
    return result("constrained_decoding_s_per_token", "s/token", times["constrained"] / n, times["plain"] / n,
                  "the same greedy loop without the constraint", goal=1 / 1.3)


BENCHMARKS = [dense_index_build, dense_queries_per_s, bm25_query_time, constrained_decoding_cost]
