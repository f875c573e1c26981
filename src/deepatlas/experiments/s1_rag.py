"""S1 — retrieval-augmented generation with citations, on Austen and the King James Bible.

Claim: retrieving passages grounds a small model — with the top-3 hybrid (BM25 + MiniLM, RRF)
passages in its prompt SmolLM2-135M answers more held-out questions than closed-book, most of its
citations point at a passage that contains the answer, and hybrid recall@5 is high (≥ 0.8).
Citations are verified (rag/generate.py: kept when the cited passage holds the answer's words,
else moved to a passage that does); the model's own citation precision is reported beside.
Measured beside it: recall@k of BM25, dense and hybrid (dev and held-out test), and the
recall/speed trade of approximate FAISS indexes (IVF, HNSW) against the exact one.

The questions are generated from the corpus (rag/evalset.py: name cloze sentences and KJV
genealogy facts, each with its supporting text); the "test" split (hash of the question) is
held out: the settings here (chunk size, k, RRF k, the prompt) were chosen on dev questions only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run


@dataclass
class Config:
    austen_books: str = "Persuasion"   # comma-separated titles
    austen_chapters: int = 0        # first n chapters of each novel (0 = all)
    bible_books: str = "Ge"         # abbreviations as the `bible` command writes them
    bible_chapters: int = 25        # first n chapters of each book (0 = all)
    chunking: str = "sentence"
    chunk_words: int = 60
    per_doc: int = 3                # cloze questions per chapter
    max_questions: int = 400
    ks: str = "1,3,5,10"
    k_generate: int = 3             # passages in the prompt
    n_generate: int = 20            # held-out questions answered by the model (RAG and closed-book)
    rrf_k: int = 60
    seed: int = 0
    threads: int = 1


def _docs(cfg: Config):
    from deepatlas.rag.corpus import austen_documents, bible_documents

    def first(docs, n):
        if not n:
            return docs
        seen: dict[str, int] = {}
        out = []
        for d in docs:
            seen[d.book] = seen.get(d.book, 0) + 1
            if seen[d.book] <= n:
                out.append(d)
        return out

    docs = []
    if cfg.austen_books:
        docs += first(austen_documents(tuple(cfg.austen_books.split(","))), cfg.austen_chapters)
    if cfg.bible_books:
        docs += first(bible_documents(tuple(cfg.bible_books.split(","))), cfg.bible_chapters)
    return docs


@experiment("S1", "rag-citations",
            claim="with the top-3 hybrid (BM25 + MiniLM, RRF) passages SmolLM2-135M answers more held-out "
                  "questions than closed-book, most (verified) citations point at a passage containing the answer, "
                  "and hybrid recall@5 is ≥ 0.8",
            config=Config, one_thread=True,
            quick={"austen_books": "Persuasion", "austen_chapters": 3, "bible_books": "Ge", "bible_chapters": 4,
                   "n_generate": 3, "max_questions": 60, "per_doc": 2},
            headline={"recall5_hybrid_test": ("hybrid recall@5 (held-out)", "{:.1%}"),
                      "rag_accuracy": ("RAG accuracy", "{:.1%}"), "closed_accuracy": ("closed-book", "{:.1%}"),
                      "citation_precision": ("citation precision", "{:.1%}")})
def rag_citations(cfg: Config, run: Run) -> Verdict:
    from deepatlas.chat.session import ChatModel, find_gguf
    from deepatlas.rag.dense import DenseIndex
    from deepatlas.rag.evalset import answer_correct, make_questions, supports
    from deepatlas.rag.generate import answer
    from deepatlas.rag.store import IndexSettings, open_index

    torch.set_num_threads(cfg.threads)
    docs = _docs(cfg)
    ks = [int(k) for k in cfg.ks.split(",")]
    t0 = time.perf_counter()
    retriever, rebuilt = open_index("s1", docs, IndexSettings(cfg.chunking, cfg.chunk_words), progress=False)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, rebuilt_again = open_index("s1", docs, IndexSettings(cfg.chunking, cfg.chunk_words), encoder=retriever.encoder)
    reload_s = time.perf_counter() - t0
    chunks = retriever.chunks
    questions = make_questions(docs, cfg.seed, cfg.per_doc, cfg.max_questions)
    if len(questions) < 2:
        raise ValueError(f"only {len(questions)} questions from {len(docs)} documents; use a larger corpus")
    n_test = sum(q.split == "test" for q in questions)
    run.print(f"{len(docs)} documents, {len(chunks)} chunks ({'built' if rebuilt else 'reloaded'} in {build_s:.1f} s, "
              f"reopened in {reload_s:.2f} s, rebuilt={rebuilt_again}); {len(questions)} questions "
              f"({n_test} held out)")

    # recall@k: a retrieved chunk that contains the question's supporting text is a hit
    qvec = retriever.embed_queries([q.question for q in questions])               # (Q, 384)
    metrics: dict[str, float] = {"questions": len(questions), "test_questions": n_test, "chunks": len(chunks),
                                 "index_build_s": build_s, "index_reload_s": reload_s,
                                 "reload_rebuilt": int(rebuilt_again)}
    kmax = max(ks)
    for method in ("bm25", "dense", "hybrid"):
        first_hit = []
        for q, v in zip(questions, qvec):
            res = retriever.search(q.question, kmax, method, rrf_k=cfg.rrf_k, query_vector=v)
            ranks = [r for r, (i, _) in enumerate(res, 1) if supports(chunks[i].text, q)]
            first_hit.append(ranks[0] if ranks else kmax + 1)
        first_hit = np.array(first_hit)
        for split in ("dev", "test"):
            sel = np.array([q.split == split for q in questions])
            for k in ks:
                metrics[f"recall{k}_{method}_{split}"] = float((first_hit[sel] <= k).mean()) if sel.any() else float("nan")
        run.print(f"  {method:6} recall@" + ", @".join(f"{k}: {metrics[f'recall{k}_{method}_test']:.1%}" for k in ks)
                  + " (held-out)")
        run.log(method=method, **{f"recall{k}_test": metrics[f"recall{k}_{method}_test"] for k in ks})

    # approximate indexes: recall of the exact top-10 and query time
    exact = DenseIndex(qvec.shape[1], "flat").build(retriever.embeddings)
    t = time.perf_counter()
    _, truth = exact.search(qvec, 10)
    exact_s = time.perf_counter() - t
    metrics["exact_queries_per_s"] = len(qvec) / max(exact_s, 1e-9)
    for kind, kw in (("ivf", {"nlist": 32, "nprobe": 4}), ("hnsw", {"hnsw_m": 16, "ef_search": 32})):
        index = DenseIndex(qvec.shape[1], kind, **kw).build(retriever.embeddings)
        t = time.perf_counter()
        _, got = index.search(qvec, 10)
        dt = time.perf_counter() - t
        overlap = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(truth, got)])
        metrics[f"{kind}_recall10_vs_exact"] = float(overlap)
        metrics[f"{kind}_queries_per_s"] = len(qvec) / max(dt, 1e-9)
        run.print(f"  FAISS {kind}: recall@10 of the exact top-10 {overlap:.1%}, {len(qvec) / max(dt, 1e-9):,.0f} "
                  f"queries/s (exact {metrics['exact_queries_per_s']:,.0f})")

    # grounded answers vs closed-book on held-out questions
    chat = ChatModel.load(find_gguf())
    test = [q for q in questions if q.split == "test"][:cfg.n_generate]
    rag_ok = closed_ok = cited = cited_ok = own = own_ok = 0
    for q in test:
        res = retriever.search(q.question, cfg.k_generate, "hybrid", rrf_k=cfg.rrf_k)
        a = answer(chat, q.question, [chunks[i] for i, _ in res])
        c = answer(chat, q.question, [])
        ok, cok = answer_correct(a.text, q), answer_correct(c.text, q)
        rag_ok += ok
        closed_ok += cok
        good = [any(x.lower() in p.text.lower() for x in q.answers) for p in a.cited()]
        cited += len(good)
        cited_ok += sum(good)
        mine = [any(x.lower() in a.passages[i - 1].text.lower() for x in q.answers) for i in a.model_citations]
        own += len(mine)
        own_ok += sum(mine)
        run.log(qid=q.qid, rag_correct=ok, closed_correct=cok, cited=a.citations, cited_contains=good,
                answer=a.text, closed=c.text)
        run.print(f"  [{'✓' if ok else '✗'}|{'✓' if cok else '✗'}] {q.question[:70]!r} -> {a.text!r} "
                  f"(closed: {c.text[:40]!r}; want {q.answers[0]!r})")
    n = max(len(test), 1)
    metrics.update(rag_accuracy=rag_ok / n, closed_accuracy=closed_ok / n, generated=len(test),
                   citation_precision=cited_ok / max(cited, 1), citations=cited,
                   model_citation_precision=own_ok / max(own, 1))
    held = (metrics["rag_accuracy"] > metrics["closed_accuracy"] and metrics["citation_precision"] >= 0.5
            and metrics["recall5_hybrid_test"] >= 0.8)
    notes = (f"Questions generated from {len(docs)} chapters ({cfg.austen_books}; {cfg.bible_books}); "
             f"{n_test} held out by hash. RAG {rag_ok}/{len(test)} vs closed-book {closed_ok}/{len(test)}; "
             f"{cited_ok}/{cited} verified citations contain the answer ({own_ok}/{own} of the model's own). Recall@5 held-out: BM25 "
             f"{metrics['recall5_bm25_test']:.1%}, dense {metrics['recall5_dense_test']:.1%}, hybrid "
             f"{metrics['recall5_hybrid_test']:.1%}.")
    return Verdict(held=held, metrics=metrics, notes=notes)
