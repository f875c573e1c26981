"""T3: supervised fine-tuning teaches a base GPT the chat format — with the loss on responses only.

Stage 0: deepatlas.alignment.base pretrains a GPT on Austen + the King James Bible (cached).
Stage 1: SFT on generated instructions (deepatlas.alignment.data: four task families — which
source a line is from, its first word, its number of words, continue it — rendered in ChatML),
loss L = −Σ m_t log π(y_t|x_≤t) / Σ m_t with m_t = 1 on the answer and its <|im_end|> only.

Measured on held-out prompts (unseen snippets AND an unseen phrasing of each instruction), greedy:
    ends_turn   the reply closes with <|im_end|> within 16 tokens
    on_task     ...and answers the question asked (a source name, a word of the line, a number,
                words that continue it) — data.on_task
    correct     ...and the answer is right (data.is_correct)
The base model gets the same ChatML prompt. The same budget (steps, batch, lr) is spent once
with the response-only loss and once with the loss on the whole conversation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from deepatlas.alignment.base import QUICK_STAGES, BaseConfig, cached_base, save_chat_lm
from deepatlas.alignment.data import instruction_set
from deepatlas.alignment.sft import SFTConfig, cached_sft, evaluate_chat, response_nll
from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run


@dataclass
class Config:
    base: BaseConfig = field(default_factory=BaseConfig)
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=500, batch_size=16, lr=2e-3))
    train_examples: int = 8000
    heldout_examples: int = 200
    max_new_tokens: int = 16
    # held: SFT ends its turn on ≥ min_ends_turn of held-out prompts and answers the question on
    # ≥ min_on_task, while the base model does either on ≤ max_base
    min_ends_turn: float = 0.8
    min_on_task: float = 0.5
    max_base: float = 0.1
    seed: int = 0


QUICK = {**QUICK_STAGES, "heldout_examples": 48, "min_on_task": 0.3}


@experiment("T3", "sft",
            claim="after SFT with the loss on responses only, the GPT deepatlas pretrained answers "
                  "held-out prompts (unseen lines, unseen phrasings) in the chat format — it ends its "
                  "turn and answers the question asked — where the base model does neither",
            config=Config, one_thread=True, quick=QUICK,
            headline={"sft_ends_turn": ("SFT ends its turn", "{:.0%}"),
                      "sft_on_task": ("SFT answers the question", "{:.0%}"),
                      "sft_correct": ("SFT correct", "{:.0%}"),
                      "base_ends_turn": ("base ends its turn", "{:.0%}"),
                      "full_seq_on_task": ("full-sequence loss answers", "{:.0%}")})
def sft(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base, info = cached_base(cfg.base, run.print)
    run.print(f"base: {info['params']:,} params, val loss {info['val_loss']:.3f} nats/token "
              + ("(cached)" if info["cached"] else f"(pretrained in {info['seconds']:.0f} s)"))
    heldout = instruction_set(cfg.heldout_examples, "heldout", seed=cfg.seed)
    results = {"base": evaluate_chat(base, heldout, cfg.max_new_tokens)}
    results["base"]["nll"] = response_nll(base, heldout)
    save_chat_lm(run.dir / "base", base)
    curves = {}
    for name, response_only in (("sft", True), ("full_seq", False)):
        sft_cfg = SFTConfig(**{**asdict(cfg.sft), "response_only": response_only})
        # both trained once per config and cached (deterministic); T4 and T5 start from "sft"
        lm, out = cached_sft(base, asdict(cfg.base), cfg.train_examples, sft_cfg)
        if response_only:
            save_chat_lm(run.dir, lm)                  # `deepatlas chat --run RUN_DIR` talks to SFT
        curves[name] = out["losses"]
        results[name] = evaluate_chat(lm, heldout, cfg.max_new_tokens)
        results[name]["nll"] = response_nll(lm, heldout)
        results[name]["seconds"], results[name]["cached"] = out["seconds"], out["cached"]
        save_chat_lm(run.dir / name, lm)
    for name, r in results.items():
        run.print(f"{name:9s} ends turn {r['ends_turn']:.0%}  on task {r['on_task']:.0%}  correct "
                  f"{r['correct']:.0%}  held-out answer NLL {r['nll']:.3f}  by family "
                  + ", ".join(f"{f} {v:.0%}" for f, v in r["correct_by_family"].items()))
    lines = ["prompt\treference\tbase\tsft\tfull_seq"]
    for i, e in enumerate(heldout):
        lines.append("\t".join([e.prompt.replace("\n", " / "), e.answer]
                               + [results[k]["replies"][i].replace("\n", " / ") for k in ("base", "sft", "full_seq")]))
    (run.dir / "answers.tsv").write_text("\n".join(lines) + "\n")
    for line in lines[1:5]:
        run.print("  " + line.replace("\t", "  |  "))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, losses in curves.items():
        ax.plot(losses, lw=0.8, label=f"{name} (training loss on its own mask)")
    ax.set_xlabel("SFT step"), ax.set_ylabel("nats/token"), ax.legend(), ax.set_title("T3 SFT")
    run.savefig(fig, "sft_loss")

    s, b = results["sft"], results["base"]
    held = (s["ends_turn"] >= cfg.min_ends_turn and s["on_task"] >= cfg.min_on_task
            and b["ends_turn"] <= cfg.max_base and b["on_task"] <= cfg.max_base)
    metrics = {"base_params": info["params"], "base_val_loss": info["val_loss"],
               "base_pretrain_seconds": info["seconds"]}
    for name, r in results.items():
        metrics.update({f"{name}_ends_turn": r["ends_turn"], f"{name}_on_task": r["on_task"],
                        f"{name}_correct": r["correct"], f"{name}_answer_nll": r["nll"]})
        metrics.update({f"{name}_correct_{f}": v for f, v in r["correct_by_family"].items()})
    metrics.update(sft_seconds=s["seconds"], full_seq_seconds=results["full_seq"]["seconds"],
                   sft_cached=s["cached"])
    return Verdict(held=held, metrics=metrics,
                   notes=f"SFT ends its turn on {s['ends_turn']:.0%} and answers the question on "
                         f"{s['on_task']:.0%} of {len(heldout)} held-out prompts (correct {s['correct']:.0%}); "
                         f"base {b['ends_turn']:.0%} / {b['on_task']:.0%}; the full-sequence loss on the "
                         f"same budget: {results['full_seq']['ends_turn']:.0%} / {results['full_seq']['on_task']:.0%}")
