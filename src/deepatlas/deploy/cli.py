"""`deepatlas export-web RUN_DIR OUT_DIR`: a char GPT run as a static page on onnxruntime-web.

    deepatlas run gpt-pretrain                       # L2: a run folder with model/ and tokenizer.json
    deepatlas export-web runs/gpt-pretrain/<time> site/ --prompt "Emma was"
    python -m http.server -d site/                   # then open http://127.0.0.1:8000/

The page (deploy/web.py) tokenizes the prompt in JavaScript and decodes greedily with the KV
cache as explicit ONNX tensors; it needs onnxruntime-web's files in the cache (see deploy/web.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export-web", help="write a char GPT run (L2) as an offline web page "
                                                 "running on onnxruntime-web")
    p.add_argument("run_dir", help="a run folder holding model/ and tokenizer.json (deepatlas run gpt-pretrain)")
    p.add_argument("out_dir", help="the folder the static site is written to")
    p.add_argument("--prompt", default="Emma was", help="the page's initial prompt (editable in the page)")
    p.add_argument("--new-tokens", type=int, default=100, help="greedy tokens the page generates")
    p.add_argument("--fetch", action="store_true", help="fetch onnxruntime-web with npm if it is not cached")
    p.set_defaults(func=run_export_web)


def run_export_web(args: argparse.Namespace) -> int:
    from deepatlas.deploy.onnx import export_gpt
    from deepatlas.deploy.web import fetch_onnxruntime_web, find_onnxruntime_web, write_site
    from deepatlas.generation.runfolder import TOKENIZER_FILE, load_language_model

    try:
        lm = load_language_model(args.run_dir)
        if lm.kind != "char":
            raise ValueError(f"{args.run_dir} has a {lm.kind} tokenizer; the page tokenizes characters only "
                             "(train with tokenizer=char)")
        chars = json.loads((Path(args.run_dir) / TOKENIZER_FILE).read_text())["chars"]
        prompt = lm.encode(args.prompt)
        c = lm.model.config
        if args.new_tokens < 1 or len(prompt) + args.new_tokens > c.block_size:
            raise ValueError(f"--new-tokens {args.new_tokens}: prompt ({len(prompt)}) + new tokens must be "
                             f"1..{c.block_size} (the model's context)")
        ort_dir = fetch_onnxruntime_web() if args.fetch else find_onnxruntime_web()
        with tempfile.TemporaryDirectory() as tmp:
            site = write_site(args.out_dir, ort_dir=ort_dir, gpt={
                "model": export_gpt(lm.model, Path(tmp) / "gpt.onnx"), "vocab": chars, "n_layer": c.n_layer,
                "n_head": c.n_head, "head_dim": c.n_embd // c.n_head, "prompt": args.prompt,
                "new_tokens": args.new_tokens})
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"deepatlas export-web: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    print(f"wrote {site}/index.html; serve it with: python -m http.server -d {site}")
    return 0
