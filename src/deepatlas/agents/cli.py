"""`deepatlas agent "task"`: SmolLM2 solves a task with tools (calculator, search over a corpus,
sandboxed Python), printing each step — the JSON call, its result or error — and the answer.

    deepatlas agent "How many minutes are in 7.5 hours?"
    deepatlas agent --corpus bible "Whom did Enoch beget? Search the Bible."
    deepatlas agent --free "What is 17 * 23?"      # without schema-constrained decoding

An empty task or a bad corpus ends with one line on stderr and status 2.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("agent", help="solve a task with tools (JSON calls: calculator, search, python), step by step")
    p.add_argument("task", help="the task, in quotes")
    p.add_argument("--corpus", default=None,
                   help="austen, bible or a folder of .txt/.md files for the search tool (default: no search tool)")
    p.add_argument("--max-steps", type=int, default=4)
    p.add_argument("--free", action="store_true", help="free decoding instead of schema-constrained decoding")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=run_agent)


def run_agent(args: argparse.Namespace) -> int:
    from deepatlas.rag.corpus import CorpusError

    try:
        if not args.task.strip():
            raise ValueError("the task is empty; give one, e.g. deepatlas agent \"What is 17 * 23?\"")
        if args.max_steps < 1:
            raise ValueError(f"--max-steps {args.max_steps} must be ≥ 1")
        import torch

        from deepatlas.agents.loop import Agent
        from deepatlas.agents.tools import answer_tool, calculator_tool, python_tool, search_tool
        from deepatlas.chat.session import ChatModel, find_gguf

        if args.threads:
            torch.set_num_threads(args.threads)
        tools = [calculator_tool(), python_tool()]
        if args.corpus:
            from deepatlas.rag.corpus import load_corpus
            from deepatlas.rag.store import open_index

            retriever, _ = open_index(args.corpus, load_corpus(args.corpus))
            tools.append(search_tool(retriever))
        tools.append(answer_tool())
        agent = Agent(ChatModel.load(find_gguf()), {t.name: t for t in tools}, not args.free, args.max_steps)
    except (CorpusError, ValueError, FileNotFoundError) as err:
        print(f"deepatlas agent: {err}", file=sys.stderr)
        return 2

    def show(step) -> None:
        print(f"call:   {step.reply}", flush=True)
        if step.error:
            print(f"error:  {step.error}", flush=True)
        elif step.result is not None:
            print(f"result: {step.result}", flush=True)

    result = agent.run(args.task, on_step=show)
    if result.answer is None:
        print(f"no answer after {args.max_steps} steps")
        return 1
    print(f"answer: {result.answer}")
    return 0
