"""L2: what each change of the speedrun recipe is worth — turn one off at a time.

The speedrun recipe of gpt-speedrun (experiments/l2_speedrun.py) and one variant per change,
that change put back to GPT-2 / nanoGPT's choice (Muon → AdamW, RoPE → learned positions,
RMSNorm → LayerNorm, QK-norm off, ReLU² → tanh-GELU, untied → tied head, zero → GPT-2 init,
soft-cap off, WSD → cosine), plus the plain GPT-2 + AdamW-cosine recipe with every change off.
All train the same steps on the same batches, in lock step (one step of each in turn, each step
timed). Measured: final val loss and training ms per step of each; a change's worth is the val
loss its removal costs (variant − full recipe; > 0: the change helps).
Held: the full recipe ends below the all-off baseline at the same steps (the changes together
help), with every variant's number reported whichever way it goes.
"""
from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.experiments.l2_speedrun import (Recipe, Trainee, austen_chars, model_options, race,
                                               train_options)
from deepatlas.experiments.l2_speedrun import Config as RaceConfig

# each change and GPT-2 / nanoGPT's value for its field(s)
REMOVALS: dict[str, dict] = {
    "muon": dict(optimizer="adamw"),
    "rope": dict(positions="learned"),
    "rmsnorm": dict(norm="layernorm"),
    "qk_norm": dict(qk_norm=False),
    "relu2": dict(activation="gelu_tanh"),
    "untied_head": dict(tie_head=True),
    "zero_init": dict(zero_init_proj=False),
    "softcap": dict(logit_softcap=0.0),
    "wsd": dict(schedule="cosine"),
}


@dataclass
class Config:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    steps: int = 600
    removals: tuple[str, ...] = tuple(REMOVALS)
    seed: int = 0
    eval_every: int = 200
    eval_batches: int = 30
    corpus_chars: int = 0
    recipe: Recipe = field(default_factory=Recipe)


@experiment("L2", "gpt-speedrun-ablation",
            claim="each change of the speedrun recipe measured by turning it off alone (val loss and ms per step); "
                  "together they beat the GPT-2 + AdamW-cosine recipe at the same number of steps",
            config=Config, one_thread=True,
            quick={"n_layer": 2, "steps": 100, "removals": "muon,rope,zero_init", "eval_every": 50,
                   "eval_batches": 6, "corpus_chars": 400_000, "recipe.warmup": 10},
            headline={"full_val": ("speedrun recipe", "{:.3f} nats/char"),
                      "baseline_val": ("every change off (GPT-2 + AdamW)", "{:.3f} nats/char"),
                      "most_valuable": ("worth most", "{}")})
def gpt_speedrun_ablation(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unknown = [r for r in cfg.removals if r not in REMOVALS]
    if unknown:
        raise ValueError(f"removals {unknown} unknown; valid: {', '.join(REMOVALS)}")
    race_cfg = RaceConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=cfg.block_size,
                          batch_size=cfg.batch_size, eval_every=cfg.eval_every, eval_batches=cfg.eval_batches)
    data, vocab = austen_chars(cfg.corpus_chars)
    baseline_recipe = dataclasses.replace(cfg.recipe, **{k: v for r in REMOVALS.values() for k, v in r.items()},
                                          bias=True, lr=1e-3, min_lr=1e-4, beta2=0.99, weight_decay=0.1,
                                          warmup=100 if cfg.steps >= 600 else cfg.recipe.warmup)
    recipes = {"full": cfg.recipe, **{f"no {r}": dataclasses.replace(cfg.recipe, **REMOVALS[r]) for r in cfg.removals},
               "baseline": baseline_recipe}
    trainees = {name: Trainee(name, model_options(rec), train_options(rec, cfg.steps), race_cfg, vocab, cfg.seed)
                for name, rec in recipes.items()}
    race(list(trainees.values()), data, race_cfg, run)

    final = {name: t.curve[-1][2] for name, t in trainees.items()}
    ms_per_step = {name: 1e3 * t.seconds / cfg.steps for name, t in trainees.items()}
    worth = {r: round(final[f"no {r}"] - final["full"], 4) for r in cfg.removals}
    for name in recipes:
        extra = f"  (removing it costs {worth[name[3:]]:+.3f})" if name.startswith("no ") else ""
        run.print(f"  {name:16} val {final[name]:.3f}  {ms_per_step[name]:.1f} ms/step{extra}")

    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    names = list(worth)
    ax[0].barh(names, [worth[n] for n in names], color=["C2" if worth[n] > 0 else "C3" for n in names])
    ax[0].axvline(0, color="k", lw=0.8)
    ax[0].set(xlabel="val loss when removed − full recipe (nats/char; > 0: the change helps)",
              title=f"{cfg.steps} steps, seed {cfg.seed}")
    for name, t in trainees.items():
        ax[1].plot([c[1] for c in t.curve], [c[2] for c in t.curve], lw=2 if name in ("full", "baseline") else 0.8,
                   label=name)
    ax[1].set(xlabel="training seconds", ylabel="val loss (nats/char)", ylim=(None, 3.0))
    ax[1].legend(fontsize=7)
    run.savefig(fig, "ablation")

    metrics = {"full_val": round(final["full"], 4), "baseline_val": round(final["baseline"], 4),
               "val": {k: round(v, 4) for k, v in final.items()},
               "ms_per_step": {k: round(v, 2) for k, v in ms_per_step.items()},
               "worth": worth, "most_valuable": max(worth, key=worth.get) if worth else None,
               "helping": sorted(r for r, w in worth.items() if w > 0),
               "not_helping": sorted(r for r, w in worth.items() if w <= 0),
               "step_cost_vs_baseline": round(statistics.fmean([ms_per_step["full"]]) / ms_per_step["baseline"], 3)}
    held = final["full"] < final["baseline"]
    return Verdict(held=held, metrics=metrics,
                   notes=f"full recipe {final['full']:.3f} vs baseline {final['baseline']:.3f} at {cfg.steps} steps; "
                         f"helping: {metrics['helping']}; not helping here: {metrics['not_helping']}")
