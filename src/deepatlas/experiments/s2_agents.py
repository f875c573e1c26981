"""S2 — an agent that calls tools with JSON function calls, and schema-constrained decoding.

Claim: SmolLM2-135M solves more tasks (arithmetic word problems, unit conversions, questions
about Genesis) through the tool loop — calculator, retrieval, sandboxed Python, each call checked
against its JSON Schema — than alone, and with schema-constrained decoding every call it emits
parses and validates (100%), where free decoding of the same prompts does not always.

The tasks are generated from a seed (agents/tasks.py); the model alone gets the task as a chat
question ("Answer with the number only"). Both agent modes see the same prompt and few-shot
conversation; only the decoding differs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run


@dataclass
class Config:
    n_tasks: int = 9
    free_tasks: int = 9      # tasks also run with free (unconstrained) decoding
    max_steps: int = 3
    seed: int = 0
    threads: int = 1


@experiment("S2", "agent-tools",
            claim="through the JSON tool loop SmolLM2-135M solves more arithmetic / conversion / corpus tasks "
                  "than alone, and with schema-constrained decoding 100% of its calls parse and validate",
            config=Config, one_thread=True, quick={"n_tasks": 2, "free_tasks": 1, "max_steps": 2},
            headline={"success_tools": ("solved with tools", "{:.1%}"), "success_alone": ("alone", "{:.1%}"),
                      "valid_constrained": ("valid calls, constrained", "{:.1%}"),
                      "valid_free": ("valid calls, free", "{:.1%}")})
def agent_tools(cfg: Config, run: Run) -> Verdict:
    from deepatlas.agents.loop import Agent, closed_book
    from deepatlas.agents.tasks import correct, make_tasks
    from deepatlas.agents.tools import answer_tool, calculator_tool, python_tool, search_tool
    from deepatlas.chat.session import ChatModel, find_gguf
    from deepatlas.rag.corpus import bible_documents
    from deepatlas.rag.evalset import fact_questions
    from deepatlas.rag.store import IndexSettings, open_index

    torch.set_num_threads(cfg.threads)
    docs = [d for d in bible_documents(("Ge",)) if d.chapter in ("5", "11")]
    retriever, _ = open_index("s2-genesis", docs, IndexSettings(size=40), progress=False)
    tasks = make_tasks(cfg.n_tasks, cfg.seed, fact_questions(docs, 0.0) if cfg.n_tasks >= 3 else None)
    chat = ChatModel.load(find_gguf())
    tools = {t.name: t for t in (calculator_tool(), search_tool(retriever), python_tool(), answer_tool())}
    agents = {"constrained": Agent(chat, tools, True, cfg.max_steps), "free": Agent(chat, tools, False, cfg.max_steps)}
    solved = {"constrained": 0, "free": 0, "alone": 0}
    replies = {"constrained": 0, "free": 0}
    valid = {"constrained": 0, "free": 0}
    seconds = {"constrained": 0.0, "free": 0.0}
    for i, task in enumerate(tasks):
        row = {"task": i, "kind": task.kind}
        for mode, agent in agents.items():
            if mode == "free" and i >= cfg.free_tasks:
                continue
            t = time.perf_counter()
            result = agent.run(task.text)
            seconds[mode] += time.perf_counter() - t
            ok = correct(result.answer, task)
            solved[mode] += ok
            replies[mode] += len(result.steps)
            valid[mode] += result.valid_calls
            row[mode] = ok
            row[f"{mode}_steps"] = [s.reply for s in result.steps]
            run.print(f"  [{mode:11}] {'✓' if ok else '✗'} {task.text[:60]!r} -> {result.answer!r} (want {task.answer}); "
                      + " | ".join(s.reply[:70] + (f" => {s.result or s.error}"[:50]) for s in result.steps))
        alone = closed_book(chat, task.text)
        row["alone"] = ok_alone = correct(alone, task)
        solved["alone"] += ok_alone
        run.print(f"  [alone      ] {'✓' if ok_alone else '✗'} -> {alone[:60]!r}")
        run.log(**row)
    n, n_free = len(tasks), min(cfg.free_tasks, len(tasks))
    metrics = {"tasks": n, "success_tools": solved["constrained"] / n, "success_alone": solved["alone"] / n,
               "success_tools_free": solved["free"] / max(n_free, 1),
               "valid_constrained": valid["constrained"] / max(replies["constrained"], 1),
               "valid_free": valid["free"] / max(replies["free"], 1),
               "replies_constrained": replies["constrained"], "replies_free": replies["free"],
               "s_per_task_constrained": seconds["constrained"] / n, "s_per_task_free": seconds["free"] / max(n_free, 1)}
    held = metrics["success_tools"] > metrics["success_alone"] and metrics["valid_constrained"] == 1.0
    notes = (f"solved: tools {solved['constrained']}/{n} (free decoding {solved['free']}/{n_free}), alone "
             f"{solved['alone']}/{n}; valid calls: constrained {valid['constrained']}/{replies['constrained']}, "
             f"free {valid['free']}/{replies['free']}.")
    return Verdict(held=held, metrics=metrics, notes=notes)
