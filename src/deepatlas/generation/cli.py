"""`deepatlas sample RUN_DIR --prompt TEXT`: continue a prompt with a GPT trained by L2.

Tokens are printed as they are chosen (streaming). Sampling by default; --greedy for argmax,
--beams N for beam search (printed when done). Bad input ends with a one-line error, exit 2.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sample", help="continue a prompt with a GPT trained by `deepatlas run gpt-pretrain`")
    p.add_argument("run_dir", help="the L2 run folder (holds model/ and tokenizer.json)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8, help="> 0; use --greedy for argmax")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--beams", type=int, default=0, help="beam search with this many beams")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    import torch

    from deepatlas.generation.beam import beam_search
    from deepatlas.generation.decode import SamplingSettings, stream_long
    from deepatlas.generation.runfolder import load_language_model

    try:
        if args.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens {args.max_new_tokens} must be ≥ 1")
        settings = SamplingSettings(greedy=args.greedy, temperature=args.temperature,
                                    top_k=args.top_k, top_p=args.top_p,
                                    repetition_penalty=args.repetition_penalty)
        settings.check()
        lm = load_language_model(args.run_dir)
        prompt = lm.encode(args.prompt)
        if len(prompt) > lm.model.context_length:
            raise ValueError(f"the prompt is {len(prompt)} tokens but this model's context is "
                             f"{lm.model.context_length} tokens; shorten it")
        torch.manual_seed(args.seed)
        sys.stdout.write(args.prompt)
        if args.beams:
            best = beam_search(lm.model, prompt, args.beams, args.max_new_tokens)[0]
            sys.stdout.write(lm.decode(best.tokens) + "\n")
            return 0
        new: list[int] = []
        shown = ""
        for token in stream_long(lm.model, prompt, args.max_new_tokens, settings, seed=args.seed):
            new.append(token)
            text = lm.decode(new)
            if not text.endswith("\ufffd"):        # a multi-byte character may still be incomplete
                sys.stdout.write(text[len(shown):])
                sys.stdout.flush()
                shown = text
        sys.stdout.write("\n")
        return 0
    except (FileNotFoundError, ValueError, KeyError) as err:
        message = err.args[0] if err.args else str(err)
        print(f"deepatlas sample: {message}", file=sys.stderr)
        return 2
