"""T6: distillation and pruning — accuracy against model size and CPU latency on Fashion-MNIST.

Built: tuning/distill.py (Hinton's soft targets with T and the T² factor, DistilBERT-style
every-other-layer students), tuning/prune.py (global magnitude pruning, structured pruning of MLP
units and attention heads); tests/tuning/test_distill_prune.py checks them against torch.

Teacher: a ViT trained on all 60,000 training images. Students have half its layers and start
from every other teacher layer (+ its embeddings and head); they learn from a small transfer
set of `n_transfer` images (Hinton §3: soft targets carry what hard labels on little data cannot):
  * distilled   L = α T² KL(p_teacher^T ‖ q^T) + (1 − α) CE(q, y)
  * hard labels  the same student, the same images and steps, cross-entropy on y only
Pruned teachers, each fine-tuned `prune_steps` on the full training set:
  * magnitude s   global unstructured magnitude pruning at sparsity s (masks kept while tuning)
  * structured    half the heads and half the MLP units of every layer removed
Measured: test accuracy, parameters (non-zero for magnitude pruning), CPU latency of a batch of
`latency_batch` images (one thread, median of repeats). Held when the distilled student keeps
≥ `keep_fraction` of the teacher's accuracy at ≤ 60 % of its parameters, and beats the
hard-label student.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.data.images import fashion_images
from deepatlas.experiments.t1_lora import accuracy, fit
from deepatlas.models.vit import ViT
from deepatlas.tuning.distill import distillation_loss, every_other_layer, parameter_count
from deepatlas.tuning.prune import apply_masks, magnitude_prune, prunable_weights, prune_heads, prune_mlp_units, sparsity


@dataclass
class Config:
    dim: int = 64
    depth: int = 6
    heads: int = 4
    mlp_dim: int = 128
    teacher_steps: int = 1000
    batch: int = 128
    lr: float = 2e-3
    n_transfer: int = 2000        # images the students learn from
    student_steps: int = 400
    T: float = 4.0
    alpha: float = 0.9
    sparsities: tuple[float, ...] = (0.5, 0.8)
    prune_steps: int = 100
    n_test: int = 5000
    latency_batch: int = 256
    keep_fraction: float = 0.95   # "keeps most of the teacher's accuracy"
    seed: int = 0


def _latency(model: nn.Module, x: Tensor, repeats: int = 9) -> float:
    """Median seconds of one forward of x (no gradients), after a warm-up."""
    model.eval()
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _distil(student: nn.Module, teacher_logits: Tensor, x: Tensor, y: Tensor, cfg: Config) -> float:
    def get_batch(step: int, micro: int):
        i = torch.randint(0, len(y), (cfg.batch,), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + step))
        return x[i], y[i], teacher_logits[i]

    t = time.perf_counter()
    train(student, lambda m, b: distillation_loss(m(b[0]), b[2], b[1], cfg.T, cfg.alpha), get_batch,
          TrainConfig(steps=cfg.student_steps, lr=cfg.lr, warmup=cfg.student_steps // 10, weight_decay=0.01,
                      log_every=0, seed=cfg.seed, progress=False))
    return time.perf_counter() - t


def _finetune_masked(model: nn.Module, masks: dict, x: Tensor, y: Tensor, cfg: Config) -> None:
    """Fine-tune with the pruned weights held at zero (masks reapplied after every update)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].register_hook(lambda g, m=mask: g * m)   # no gradient into pruned weights
    fit(model, x, y, cfg.prune_steps, cfg.batch, cfg.lr / 4, cfg.seed + 7)
    apply_masks(model, masks)                                 # AdamW's decay / momentum cannot revive them


@experiment("T6", "distill",
            claim="a ViT student with half the teacher's layers, distilled with soft targets from a small transfer "
                  "set, keeps most of the teacher's Fashion-MNIST accuracy and beats the same student trained on "
                  "the hard labels; pruning trades accuracy for non-zero weights (magnitude) or latency (structured)",
            config=Config, one_thread=True,
            quick={"dim": 32, "depth": 4, "mlp_dim": 64, "teacher_steps": 200, "batch": 64, "n_transfer": 500,
                   "student_steps": 120, "sparsities": "0.5", "prune_steps": 30, "n_test": 500, "latency_batch": 64,
                   "keep_fraction": 0.9},
            headline={"acc_teacher": ("teacher accuracy", "{:.1%}"), "acc_distilled": ("distilled student", "{:.1%}"),
                      "acc_hard": ("student, hard labels", "{:.1%}"),
                      "student_param_fraction": ("student / teacher parameters", "{:.0%}"),
                      "acc_structured": ("structured-pruned teacher", "{:.1%}")})
def distill(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = fashion_images("train", 28)
    xt, yt = fashion_images("test", 28, cfg.n_test)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg.seed))
    xs, ys = x[perm[:cfg.n_transfer]], y[perm[:cfg.n_transfer]]
    lat_x = xt[:cfg.latency_batch]
    torch.manual_seed(cfg.seed)
    teacher = ViT(28, 7, 1, 10, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_dim)
    sec = fit(teacher, x, y, cfg.teacher_steps, cfg.batch, cfg.lr, cfg.seed, run, "teacher")
    rows: dict[str, dict] = {}

    def record(name: str, model: nn.Module, **extra) -> None:
        rows[name] = {"accuracy": accuracy(model, xt, yt), "params": parameter_count(model, nonzero=True),
                      "latency_ms": 1000 * _latency(model, lat_x), **extra}
        run.log(variant=name, **rows[name])
        run.print(f"  {name:>16}: accuracy {rows[name]['accuracy']:.1%}  non-zero params {rows[name]['params']:>8,}  "
                  f"latency {rows[name]['latency_ms']:6.1f} ms / {cfg.latency_batch} images")

    record("teacher", teacher, seconds=sec)
    with torch.no_grad():
        teacher.eval()
        soft = torch.cat([teacher(xs[i:i + 500]) for i in range(0, len(ys), 500)])   # teacher logits (N, 10)
    student = every_other_layer(teacher)
    record("distilled", student, seconds=_distil(student, soft, xs, ys, cfg))
    hard = every_other_layer(teacher)
    record("hard labels", hard, seconds=fit(hard, xs, ys, cfg.student_steps, cfg.batch, cfg.lr, cfg.seed))

    for s in cfg.sparsities:
        m = copy.deepcopy(teacher)
        masks = magnitude_prune(m, s)
        _finetune_masked(m, masks, x, y, cfg)
        record(f"magnitude {s:.0%}", m, sparsity=sparsity(prunable_weights(m).values()))
    m = copy.deepcopy(teacher)
    for block in m.blocks:
        prune_heads(block.self_attn, max(1, cfg.heads // 2))
        prune_mlp_units(block.ffn, cfg.mlp_dim // 2)
    fit(m, x, y, cfg.prune_steps, cfg.batch, cfg.lr / 4, cfg.seed + 7)
    record("structured", m)

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in rows.items():
        for a, key in zip(ax, ("params", "latency_ms")):
            a.scatter(r[key], r["accuracy"], s=40)
            a.annotate(name, (r[key], r["accuracy"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax[0].set(xlabel="non-zero parameters", ylabel="test accuracy", title="accuracy against model size")
    ax[1].set(xlabel=f"CPU latency, ms per {cfg.latency_batch} images (1 thread)", ylabel="test accuracy",
              title="accuracy against latency")
    run.savefig(fig, "distill")

    t, d, h = rows["teacher"], rows["distilled"], rows["hard labels"]
    fraction = d["params"] / t["params"]
    checks = {"student_keeps_accuracy": d["accuracy"] >= cfg.keep_fraction * t["accuracy"] and fraction <= 0.6,
              "distilled_beats_hard_labels": d["accuracy"] > h["accuracy"]}
    metrics = {"acc_teacher": t["accuracy"], "acc_distilled": d["accuracy"], "acc_hard": h["accuracy"],
               "student_param_fraction": fraction, "acc_structured": rows["structured"]["accuracy"],
               "latency_ratio_structured": t["latency_ms"] / rows["structured"]["latency_ms"],
               "latency_ratio_student": t["latency_ms"] / d["latency_ms"], "variants": rows, "checks": checks}
    notes = ("; ".join(f"{k} {r['accuracy']:.1%} ({r['params']:,} params, {r['latency_ms']:.1f} ms)" for k, r in rows.items())
             + "; " + "; ".join(f"{k}={'yes' if v else 'NO'}" for k, v in checks.items()))
    return Verdict(held=all(checks.values()), metrics=metrics, notes=notes)
