"""`deepatlas chat` (interactive, streaming, multi-turn) and `deepatlas generate` (one prompt).

    deepatlas chat [--model smollm2 | --gguf PATH | --run RUN_DIR] [--weights fp32|bf16|int8|int4|q8|gguf] [--temperature 0.7]
    deepatlas generate --model smollm2 --prompt "What is the capital of France?" [--raw]

In chat: an empty line is ignored, /reset forgets the conversation, /exit or Ctrl-D leaves.
Ctrl-C while the model answers stops that answer; Ctrl-C at the prompt asks, a second one exits.
"""
from __future__ import annotations

import argparse
import sys

from deepatlas.generation.decode import SamplingSettings

WEIGHTS = ("fp32", "bf16", "int8", "int4", "q8", "gguf")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="smollm2", help="installed model (default: smollm2)")
    p.add_argument("--gguf", default=None, help="path of a llama GGUF file instead of --model")
    p.add_argument("--weights", default="fp32", choices=WEIGHTS,
                   help="weights in memory: fp32 (exact), bf16, int8 per channel, int4 (the file's Q4 codes, "
                        "fused kernel; the fastest), q8 (Q8_0 blocks), "
                        "gguf (the file's own blocks, dequantised on the fly; same answers as fp32)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat with SmolLM2 (or any llama GGUF) in the terminal")
    _add_common(p)
    p.add_argument("--context", type=int, default=2048, help="tokens of conversation kept (default 2048)")
    p.add_argument("--server", default=None, help="chat with a running `deepatlas serve` at this URL instead")
    p.add_argument("--api-key", default=None, help="the server's --api-key (with --server)")
    p.add_argument("--run", default=None, metavar="RUN_DIR",
                   help="chat with a model trained by the T3/T4/T5 experiments (a run folder or its base/sft/ppo/dpo)")
    p.set_defaults(func=_cmd_chat)

    p = sub.add_parser("generate", help="answer one prompt with SmolLM2 (or any llama GGUF)")
    _add_common(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--raw", action="store_true", help="continue the text as is, without the chat template")
    p.set_defaults(func=_cmd_generate)


def _settings(args: argparse.Namespace) -> SamplingSettings:
    s = SamplingSettings(greedy=args.temperature == 0.0, temperature=args.temperature or 1.0,
                         top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty)
    s.check()
    return s


def _load(args: argparse.Namespace):
    import torch

    from deepatlas.chat.session import ChatModel, find_gguf

    if args.threads:
        torch.set_num_threads(args.threads)
    if getattr(args, "run", None):  # a GPT deepatlas trained (deepatlas.alignment), same chat interface
        from deepatlas.alignment.base import run_chat_model

        return run_chat_model(args.run)
    return ChatModel.load(find_gguf(args.model, args.gguf), args.weights)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _cmd_generate(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        chat = _load(args)
        ids = (chat.tokenizer.encode(args.prompt) if args.raw
               else chat.prompt_ids([{"role": "user", "content": args.prompt}]))
        if len(ids) + args.max_new_tokens > chat.model.context_length:
            raise ValueError(f"prompt of {len(ids)} tokens + --max-new-tokens {args.max_new_tokens} exceeds "
                             f"the context length {chat.model.context_length}")
    except (FileNotFoundError, ValueError) as err:
        print(f"deepatlas generate: {err}", file=sys.stderr)
        return 2
    for piece in chat.stream_text(ids, args.max_new_tokens, settings, args.seed):
        _write(piece)
    _write("\n")
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from deepatlas.chat.session import ChatSession

    try:
        settings = _settings(args)
        if args.server:  # the same session interface over HTTP (deepatlas.serve.client)
            from deepatlas.serve.client import RemoteSession

            session = RemoteSession(args.server, api_key=args.api_key, max_new_tokens=args.max_new_tokens,
                                    temperature=args.temperature, top_p=args.top_p, seed=args.seed)
        else:
            chat = _load(args)
            if args.run:  # a small model: keep the conversation within its context
                args.context = min(args.context, chat.model.context_length)
                args.max_new_tokens = min(args.max_new_tokens, args.context // 2)
            session = ChatSession(chat, context=args.context, max_new_tokens=args.max_new_tokens,
                                  settings=settings, seed=args.seed)
    except (FileNotFoundError, ValueError) as err:
        print(f"deepatlas chat: {err}", file=sys.stderr)
        return 2
    print("deepatlas chat — empty line ignored, /reset clears, /exit or Ctrl-D quits, "
          "Ctrl-C stops an answer", flush=True)
    interrupted_at_prompt = False
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            if interrupted_at_prompt:
                print()
                return 0
            interrupted_at_prompt = True
            print("\n(Ctrl-C again or Ctrl-D to exit)", flush=True)
            continue
        interrupted_at_prompt = False
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return 0
        if text == "/reset":
            session.reset()
            print("[conversation cleared]", flush=True)
            continue
        started = []  # "bot> " goes out with the first piece, after any notice

        def show(piece: str) -> None:
            if not started:
                started.append(True)
                _write("bot> ")
            _write(piece)

        try:
            session.reply(line, show, notify=lambda msg: _write(msg + "\n"))
            show("")
            _write("\n")
        except KeyboardInterrupt:
            _write(" [interrupted]\n")
        except ValueError as err:
            session.messages.clear()
            print(f"\n[error: {err}]", flush=True)
