"""T1: transfer learning and PEFT — linear probe vs full fine-tuning vs LoRA.

Built: tuning/lora.py (LoRA wrapper of any linear, α/r and rsLoRA scaling, merge/unmerge, adapters
in peft's files; tests/tuning/test_lora.py checks outputs and gradients against peft).

Transfer task on Fashion-MNIST: a ViT is pre-trained on the clothes (classes 0-4: T-shirt,
trouser, pullover, dress, coat), then adapted with few labels (`n_down` images) to the other five
classes (sandal, shirt, sneaker, bag, ankle boot) — a new split it has never seen. Every
adaptation gets the same steps and batches and a new 5-way head:
  * scratch        the same ViT from random weights, all trained (what pre-training is worth)
  * linear probe   frozen pre-trained ViT, only the head (its features computed once)
  * full fine-tune every weight (lr `lr_full`)
  * LoRA r ∈ ranks  frozen ViT + LoRA on every attention and MLP linear + the head (lr `lr_lora`)
Measured: test accuracy, trainable parameters, training seconds (one thread).
Held when some LoRA rank is within `tolerance` of full fine-tuning while training ≤
`max_fraction` of its parameters, and the best LoRA beats the linear probe.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.data.images import fashion_images
from deepatlas.models.vit import ViT
from deepatlas.tuning.lora import apply_lora, trainable_parameters

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")
UPSTREAM, DOWNSTREAM = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


@dataclass
class Config:
    size: int = 28
    patch: int = 7
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 192
    pretrain_steps: int = 800
    pretrain_lr: float = 2e-3
    n_down: int = 500             # labelled downstream training images
    n_test: int = 2000            # downstream test images
    steps: int = 200              # adaptation steps, every variant
    batch: int = 64
    lr_full: float = 5e-4
    lr_lora: float = 3e-3
    lr_probe: float = 1e-2
    lr_scratch: float = 2e-3
    ranks: tuple[int, ...] = (1, 4, 16)
    alpha_over_r: float = 2.0     # α = 2r: the α / r scaling stays 2 for every rank
    tolerance: float = 0.02       # "close to full fine-tuning": within 2 accuracy points
    max_fraction: float = 0.10    # "a small fraction": ≤ 10 % of full fine-tuning's trainable parameters
    seed: int = 0


def class_split(split: str, size: int, classes: tuple[int, ...], n: int | None = None) -> tuple[Tensor, Tensor]:
    """Images of the given classes, labels renumbered 0..len(classes)-1; the first n if given."""
    x, y = fashion_images(split, size)
    keep = torch.isin(y, torch.tensor(classes))
    x, y = x[keep], y[keep]
    y = torch.searchsorted(torch.tensor(classes), y)
    return (x, y) if n is None else (x[:n], y[:n])


def fit(model: nn.Module, x: Tensor, y: Tensor, steps: int, batch: int, lr: float, seed: int,
        run: Run | None = None, name: str = "") -> float:
    """Cross-entropy training with the shared loop (AdamW, warmup + cosine); the same batch k
    for every model given the same seed. Returns the seconds it took."""
    def get_batch(step: int, micro: int):
        i = torch.randint(0, len(y), (batch,), generator=torch.Generator().manual_seed(seed * 100_003 + step))
        return x[i], y[i]

    t = time.perf_counter()
    res = train(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), get_batch,
                TrainConfig(steps=steps, lr=lr, warmup=steps // 10, weight_decay=0.01, log_every=0, seed=seed,
                            progress=False))
    if run is not None:
        for s in range(0, steps, max(1, steps // 20)):
            run.log(variant=name, step=s, loss=res.losses[s])
    return time.perf_counter() - t


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    model.eval()
    return float(sum((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum() for i in range(0, len(y), batch)) / len(y))


def _probe(model: ViT, x: Tensor, y: Tensor, cfg: Config) -> float:
    """Linear probe: the frozen ViT's class-token features once, then only the head trains."""
    t = time.perf_counter()
    with torch.no_grad():
        model.eval()
        feats = torch.cat([model.features(x[i:i + 500])[:, 0] for i in range(0, len(y), 500)])   # (N, D)
    fit(model.head, feats, y, cfg.steps, cfg.batch, cfg.lr_probe, cfg.seed)
    return time.perf_counter() - t


@experiment("T1", "lora",
            claim="a ViT pre-trained on five Fashion-MNIST classes and adapted to the five others: LoRA comes within a "
                  "couple of points of full fine-tuning while training a few percent of its parameters, and beats a "
                  "linear probe",
            config=Config, one_thread=True,
            quick={"dim": 64, "depth": 2, "mlp_dim": 128, "pretrain_steps": 150, "batch": 32, "n_down": 300,
                   "n_test": 500, "steps": 80, "ranks": "2,8", "tolerance": 0.05, "max_fraction": 0.15},
            headline={"acc_full": ("full fine-tune accuracy", "{:.1%}"), "acc_lora_best": ("best LoRA accuracy", "{:.1%}"),
                      "acc_probe": ("linear probe accuracy", "{:.1%}"), "acc_scratch": ("from scratch", "{:.1%}"),
                      "lora_param_fraction": ("smallest LoRA near full: trainable / full", "{:.2%}")})
def lora(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kwargs = dict(image_size=cfg.size, patch_size=cfg.patch, num_classes=len(UPSTREAM), dim=cfg.dim, depth=cfg.depth,
                  heads=cfg.heads, mlp_dim=cfg.mlp_dim)
    xu, yu = class_split("train", cfg.size, UPSTREAM)
    xd, yd = class_split("train", cfg.size, DOWNSTREAM, cfg.n_down)
    xt, yt = class_split("test", cfg.size, DOWNSTREAM, cfg.n_test)
    xut, yut = class_split("test", cfg.size, UPSTREAM, cfg.n_test)
    torch.manual_seed(cfg.seed)
    upstream = ViT(**kwargs)
    sec = fit(upstream, xu, yu, cfg.pretrain_steps, cfg.batch * 2, cfg.pretrain_lr, cfg.seed + 1, run, "pretrain")
    acc_up = accuracy(upstream, xut, yut)
    run.print(f"  pre-trained on classes {UPSTREAM}: test accuracy {acc_up:.1%} ({sec:.0f} s)")

    def new_head(model: ViT) -> ViT:
        torch.manual_seed(cfg.seed + 2)
        model.head = nn.Linear(cfg.dim, len(DOWNSTREAM))
        return model

    results: dict[str, dict] = {}

    def record(name: str, model: nn.Module, seconds: float, trainable: int) -> None:
        acc = accuracy(model, xt, yt)
        results[name] = {"accuracy": acc, "trainable": trainable, "seconds": seconds}
        run.log(variant=name, accuracy=acc, trainable=trainable, seconds=seconds)
        run.print(f"  {name:>8}: accuracy {acc:.1%}  trainable {trainable:>9,}  {seconds:5.1f} s")

    torch.manual_seed(cfg.seed + 3)
    scratch = ViT(**{**kwargs, "num_classes": len(DOWNSTREAM)})
    record("scratch", scratch, fit(scratch, xd, yd, cfg.steps, cfg.batch, cfg.lr_scratch, cfg.seed, run, "scratch"),
           trainable_parameters(scratch))
    probe = new_head(copy.deepcopy(upstream))
    for p in probe.parameters():
        p.requires_grad_(p is probe.head.weight or p is probe.head.bias)
    record("probe", probe, _probe(probe, xd, yd, cfg), trainable_parameters(probe))
    full = new_head(copy.deepcopy(upstream))
    record("full", full, fit(full, xd, yd, cfg.steps, cfg.batch, cfg.lr_full, cfg.seed, run, "full"),
           trainable_parameters(full))
    total = results["full"]["trainable"]
    for r in cfg.ranks:
        m = new_head(copy.deepcopy(upstream))
        apply_lora(m, r=r, alpha=cfg.alpha_over_r * r, targets=LORA_TARGETS, trainable=("head",))
        record(f"lora_r{r}", m, fit(m, xd, yd, cfg.steps, cfg.batch, cfg.lr_lora, cfg.seed, run, f"lora_r{r}"),
               trainable_parameters(m))

    loras = {k: v for k, v in results.items() if k.startswith("lora")}
    best = max(loras, key=lambda k: loras[k]["accuracy"])
    acc_full, acc_best = results["full"]["accuracy"], loras[best]["accuracy"]
    near = [k for k in loras if loras[k]["accuracy"] >= acc_full - cfg.tolerance]
    smallest = min(near, key=lambda k: loras[k]["trainable"]) if near else best
    fraction = loras[smallest]["trainable"] / total

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    colour = {"scratch": "C7", "probe": "C2", "full": "C3"}
    for name, r in results.items():
        for a, key in zip(ax, ("trainable", "seconds")):
            a.scatter(r[key], r["accuracy"], s=40, color=colour.get(name, "C0"))
            a.annotate(name, (r[key], r["accuracy"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax[0].set(xscale="log", xlabel="trainable parameters", ylabel="downstream test accuracy",
              title="accuracy against trainable parameters")
    ax[1].set(xlabel="training seconds (1 thread)", ylabel="downstream test accuracy",
              title="accuracy against training time")
    fig.suptitle(f"ViT pre-trained on Fashion-MNIST 0-4, adapted to 5-9 with {len(yd)} labels, {cfg.steps} steps")
    run.savefig(fig, "lora")

    checks = {"lora_close_to_full_at_small_fraction": bool(near) and fraction <= cfg.max_fraction,
              "lora_beats_probe": acc_best > results["probe"]["accuracy"]}
    metrics = {"acc_pretrain_upstream": acc_up, "acc_full": acc_full, "acc_lora_best": acc_best, "best_lora": best,
               "acc_probe": results["probe"]["accuracy"], "acc_scratch": results["scratch"]["accuracy"],
               "smallest_lora_near_full": smallest, "lora_param_fraction": fraction, "trainable_full": total,
               "results": results, "checks": checks}
    notes = (f"full fine-tune {acc_full:.1%} ({total:,} params, {results['full']['seconds']:.1f} s); {smallest} "
             f"{loras[smallest]['accuracy']:.1%} with {loras[smallest]['trainable']:,} params ({fraction:.1%}); best "
             f"LoRA {best} {acc_best:.1%}; probe {results['probe']['accuracy']:.1%}; scratch "
             f"{results['scratch']['accuracy']:.1%}; " + "; ".join(f"{k}={'yes' if v else 'NO'}" for k, v in checks.items()))
    return Verdict(held=all(checks.values()), metrics=metrics, notes=notes)
