"""`deepatlas serve`: the OpenAI-compatible server.

    deepatlas serve [--model smollm2 | --gguf PATH | --model tiny-random] [--weights int4]
                    [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--slots 16] [--slot-len 1024]

Then any OpenAI client talks to it, e.g.
    OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY").chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hi!"}])
"""
from __future__ import annotations

import argparse
import signal
import sys

from deepatlas.serve.engine import TINY, WEIGHTS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (chat, completions, embeddings)")
    p.add_argument("--model", default="smollm2", help=f"smollm2 (default) or {TINY} (random 2-layer, for tests)")
    p.add_argument("--gguf", default=None, help="path of a llama GGUF file instead of --model")
    p.add_argument("--weights", default="int4", choices=WEIGHTS, help="weights in memory (default int4: fastest)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    p.add_argument("--slots", type=int, default=16, help="sequences decoded together (KV-cache slots)")
    p.add_argument("--slot-len", type=int, default=1024, help="positions per slot: prompt + answer")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-embeddings", action="store_true", help="do not offer /v1/embeddings")
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    if not 1 <= args.slots <= 256 or args.slot_len < 16:
        print(f"deepatlas serve: --slots {args.slots} must be 1..256 and --slot-len {args.slot_len} ≥ 16",
              file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"deepatlas serve: --port {args.port} must be 0..65535", file=sys.stderr)
        return 2
    import uvicorn

    from deepatlas.serve.app import create_app
    from deepatlas.serve.engine import Engine, load_chat_model

    try:
        chat = load_chat_model(args.model, args.weights, args.gguf)
    except (FileNotFoundError, ValueError) as err:
        print(f"deepatlas serve: {err}", file=sys.stderr)
        return 2
    name = TINY if args.model == TINY else (args.model if args.gguf is None else args.gguf.rsplit("/", 1)[-1])
    engine = Engine(chat, name, slots=args.slots, slot_len=args.slot_len, threads=args.threads)
    embedder = None
    if not args.no_embeddings:
        import importlib.util

        from deepatlas.models.sentence_encoder import MINILM_PACKAGE, load_minilm

        if importlib.util.find_spec(MINILM_PACKAGE) is not None:
            embedder = load_minilm
    app = create_app(engine, api_key=args.api_key, embedder=embedder)
    print(f"deepatlas serve: {name} ({args.weights}) on http://{args.host}:{args.port}/v1 "
          f"({args.slots} slots × {engine.context} positions)", flush=True)
    # uvicorn turns SIGTERM / Ctrl-C into a graceful shutdown (in-flight responses finish, then the
    # batcher stops) and re-raises the signal afterwards: that one exits 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=60)
    return 0
