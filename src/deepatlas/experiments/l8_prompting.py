"""L8 — prompting: k-shot, chain-of-thought and self-consistency with SmolLM2-135M-Instruct.

Claim (GPT-3's, Brown et al. 2020): solved examples in the prompt raise accuracy — with k shots
(mean over several draws and orders of the shots) SmolLM2 classifies better than zero-shot on
both classification tasks on average. Measured beside it, and reported whether or not they
hold at 135M parameters: chain-of-thought vs direct answers on word problems (Wei et al. 2022
found CoT helps only large models) and accuracy vs the number of self-consistency votes.

Tasks are generated from word lists and templates (prompting/tasks.py; one-digit word problems
from agents/tasks.py); shots come from a pool disjoint from the test items.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run


@dataclass
class Config:
    ks: str = "0,1,2,4,8"
    shuffles: int = 3          # draws (and orders) of the k shots
    n_pool: int = 12           # shot pool per task
    n_test: int = 24           # test items per task (at most)
    n_problems: int = 8        # word problems for direct / CoT / self-consistency
    votes: str = "1,3,5"
    temperature: float = 0.7
    cot_tokens: int = 48
    seed: int = 0
    threads: int = 1


@experiment("L8", "prompting",
            claim="with k solved examples in the prompt SmolLM2-135M classifies better than zero-shot "
                  "(mean over shot draws, averaged over two tasks); CoT and self-consistency are measured beside it",
            config=Config, one_thread=True,
            quick={"ks": "0,4", "shuffles": 2, "n_test": 12, "n_problems": 1, "votes": "1,3", "cot_tokens": 32},
            headline={"acc_k0": ("0-shot accuracy", "{:.1%}"), "acc_kmax": ("k-shot (largest k)", "{:.1%}"),
                      "acc_direct": ("direct", "{:.1%}"), "acc_cot": ("CoT", "{:.1%}"),
                      "acc_sc_max": ("self-consistency", "{:.1%}")})
def prompting(cfg: Config, run: Run) -> Verdict:
    from deepatlas.agents.tasks import correct, make_tasks
    from deepatlas.chat.session import ChatModel, find_gguf
    from deepatlas.prompting.kshot import kshot_accuracy
    from deepatlas.prompting.reasoning import answer_paths, cot_prompt, direct_prompt, vote
    from deepatlas.prompting.tasks import TASKS

    torch.set_num_threads(cfg.threads)
    ks = [int(k) for k in cfg.ks.split(",")]
    votes = [int(v) for v in cfg.votes.split(",")]
    chat = ChatModel.load(find_gguf())
    model, tok = chat.model, chat.tokenizer
    metrics: dict[str, float] = {}
    per_k = {k: [] for k in ks}
    for name, make in TASKS.items():
        task = make()
        pool, test = task.split(cfg.n_pool, cfg.seed)
        test = test[:cfg.n_test]
        for k in ks:
            accs = [kshot_accuracy(model, tok, task, pool, test, k, cfg.seed * 1000 + s)
                    for s in range(1 if k == 0 else cfg.shuffles)]
            mean, sd = statistics.mean(accs), statistics.pstdev(accs)
            metrics[f"{name}_k{k}"], metrics[f"{name}_k{k}_sd"] = mean, sd
            per_k[k].append(mean)
            run.log(task=name, k=k, accuracy=mean, sd=sd, draws=accs)
            run.print(f"  {name:9} k={k}: {mean:.1%} ± {sd:.1%} over {len(accs)} draw(s) of {len(test)} items")
    for k in ks:
        metrics[f"acc_k{k}"] = statistics.mean(per_k[k])
    metrics["acc_k0"], metrics["acc_kmax"] = metrics[f"acc_k{ks[0]}"], metrics[f"acc_k{ks[-1]}"]

    # direct vs chain-of-thought vs self-consistency on word problems
    problems = make_tasks(cfg.n_problems, cfg.seed + 1, kinds=("arithmetic",), small=True)
    direct_ok = cot_ok = 0
    sc_ok = {v: 0 for v in votes}
    for i, p in enumerate(problems):
        d = answer_paths(model, tok, direct_prompt(p.text), 1, 8, None, last=False)[0]
        c = answer_paths(model, tok, cot_prompt(p.text), 1, cfg.cot_tokens, None)[0]
        samples = answer_paths(model, tok, cot_prompt(p.text), max(votes), cfg.cot_tokens, cfg.temperature,
                               seed=cfg.seed + i)
        direct_ok += correct(d, p)
        cot_ok += correct(c, p)
        for v in votes:
            sc_ok[v] += correct(vote(samples[:v]), p)
        run.log(problem=i, direct=d, cot=c, samples=samples, want=p.answer)
        run.print(f"  {p.text[:60]!r} want {p.answer}: direct {d}, CoT {c}, samples {samples}")
    n = len(problems)
    metrics.update(problems=n, acc_direct=direct_ok / n, acc_cot=cot_ok / n,
                   **{f"acc_sc{v}": sc_ok[v] / n for v in votes})
    metrics["acc_sc_max"] = metrics[f"acc_sc{max(votes)}"]
    metrics["kshot_gain"] = metrics["acc_kmax"] - metrics["acc_k0"]
    metrics["cot_gain"] = metrics["acc_cot"] - metrics["acc_direct"]
    metrics["sc_gain"] = metrics["acc_sc_max"] - metrics[f"acc_sc{min(votes)}"]
    held = metrics["kshot_gain"] > 0
    notes = (f"k-shot: {metrics['acc_k0']:.1%} (k=0) -> {metrics['acc_kmax']:.1%} (k={ks[-1]}); "
             f"CoT {metrics['acc_cot']:.1%} vs direct {metrics['acc_direct']:.1%} "
             f"({'helps' if metrics['cot_gain'] > 0 else 'does not help'} at 135M); self-consistency "
             + ", ".join(f"{v} votes {metrics[f'acc_sc{v}']:.1%}" for v in votes) + ".")
    return Verdict(held=held, metrics=metrics, notes=notes)
