"""`deepatlas ask [--corpus austen|bible|DIR] [--k 5] "question"`: a grounded answer with citations.

The corpus is indexed once (MiniLM embeddings in FAISS + BM25, kept in $DEEPATLAS_CACHE/rag and
rebuilt when the files change); the top-k hybrid passages go into SmolLM2's prompt; the answer
is printed, then each cited passage with its book and chapter. Bad input (an empty question, a
missing or empty folder, a folder of only binary files) ends with one line on stderr, status 2.
"""
from __future__ import annotations

import argparse
import sys
import textwrap


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("ask", help="answer a question from the Austen novels, the KJV Bible or your own "
                                          ".txt/.md folder, citing the passages")
    p.add_argument("question", help="the question, in quotes")
    p.add_argument("--corpus", default="austen", help="austen, bible, or a folder of .txt/.md files (default: austen)")
    p.add_argument("--k", type=int, default=3, help="passages given to the model (default 3)")
    p.add_argument("--method", default="hybrid", choices=("bm25", "dense", "hybrid"))
    p.add_argument("--chunk-words", type=int, default=60, help="words per passage (default 60)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=run_ask)


def run_ask(args: argparse.Namespace) -> int:
    from deepatlas.rag.corpus import CorpusError, load_corpus

    try:
        if not args.question.strip():
            raise ValueError("the question is empty; ask something, e.g. deepatlas ask \"Who is Mr. Darcy?\"")
        if not 1 <= args.k <= 9:
            raise ValueError(f"--k {args.k}: give 1..9 passages")
        docs = load_corpus(args.corpus)
        import torch

        from deepatlas.chat.session import ChatModel, find_gguf
        from deepatlas.rag.generate import answer
        from deepatlas.rag.store import IndexSettings, open_index

        if args.threads:
            torch.set_num_threads(args.threads)
        gguf = find_gguf()
        retriever, _ = open_index(args.corpus, docs, IndexSettings(size=args.chunk_words))
        hits = retriever.search(args.question, args.k, args.method)
        passages = [retriever.chunks[i] for i, _ in hits]
        chat = ChatModel.load(gguf)
        result = answer(chat, args.question, passages, args.max_new_tokens)
    except (CorpusError, ValueError, FileNotFoundError) as err:
        print(f"deepatlas ask: {err}", file=sys.stderr)
        return 2
    print(result.text)
    print()
    for i, p in enumerate(passages, 1):
        mark = "*" if i in result.citations else " "
        print(f"{mark}[{i}] {p.where}")
        print(textwrap.indent(textwrap.fill(p.text, 96), "     "))
    print("\n(* = cited)")
    return 0
