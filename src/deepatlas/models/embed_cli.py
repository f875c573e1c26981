"""`deepatlas embed [--model minilm] [--json] TEXT...`: sentence embeddings from our BERT.

One text: its embedding, one line of floats. Two or more: their cosine-similarity matrix
(--json instead prints a JSON list of lists of floats, one embedding per text). A text longer
than the model's max_seq_length is truncated, with a note on stderr. Bad input (an empty text, a
missing model package) ends with a one-line error and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

MODELS = ("minilm",)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("embed", help="sentence embeddings (all-MiniLM-L6-v2 in our BERT) or their cosine similarities")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed")
    p.add_argument("--model", default="minilm", help=f"the encoder: {', '.join(MODELS)}")
    p.add_argument("--json", action="store_true", help="print a JSON list of embeddings (lists of floats)")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    try:
        if args.model not in MODELS:
            raise ValueError(f"--model {args.model!r}; valid: {', '.join(MODELS)}")
        empty = [i + 1 for i, t in enumerate(args.texts) if not t.strip()]
        if empty:
            raise ValueError(f"text {', '.join(map(str, empty))} is empty; give each TEXT some words")
        from deepatlas.models.sentence_encoder import cosine_matrix, load_minilm

        encoder = load_minilm()
        import torch

        with torch.no_grad():
            vectors = encoder.encode(args.texts, batch_size=args.batch_size, warn=True)
    except (ValueError, FileNotFoundError) as err:
        print(f"deepatlas embed: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([[round(float(x), 7) for x in row] for row in vectors]))
    elif len(args.texts) == 1:
        print(" ".join(f"{float(x):.6f}" for x in vectors[0]))
    else:
        sims = cosine_matrix(vectors)
        labels = [t if len(t) <= 40 else t[:37] + "..." for t in args.texts]
        rows = [f"{i + 1:>2}. {label:<{max(map(len, labels))}}  " for i, label in enumerate(labels)]
        print(" " * len(rows[0]) + " ".join(f"{i + 1:>6}" for i in range(len(labels))))
        for row, sim in zip(rows, sims):
            print(row + " ".join(f"{float(s):6.3f}" for s in sim))
    return 0
