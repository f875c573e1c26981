"""V3: local CNN vs global ViT as the training set grows — does the CNN's inductive bias win with little data?

The seeds' claim (Dosovitskiy et al. 2021 §4.2; the slides "CNNs exploit local constraints while
Transformers have a more global view"): convolution builds in locality and translation
equivariance, so with few examples a CNN generalises better than a ViT, which must learn them from
the data; as the data grows the gap narrows (in the paper the ViT overtakes at ImageNet-21k/JFT scale).

Setup: the A1 ResNet (78k parameters) and a ViT of about the same size (7×7 patches, 77k), the same
budget for both at each size — epochs × n images, at least `min_steps` updates — on random subsets
of Fashion-MNIST (each seed its own subset and initialisation), tested on the same test images.
Held when the ResNet's mean advantage at the smallest size is positive and larger than at the
largest size (the gap narrows). Reported: every seed, mean and min–max per size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.models.cnn import ResNet, count_parameters
from deepatlas.models.vit import ViT
from deepatlas.vision.classify import ClassifyConfig, ImageData, load_images, train_classifier

RESNET = {"depths": (1, 1, 1), "widths": (16, 32, 64)}
VIT = {"image_size": 28, "patch_size": 7, "dim": 48, "depth": 4, "heads": 4, "mlp_dim": 96}


@dataclass
class Config:
    sizes: tuple[int, ...] = (500, 2500, 10000)
    seeds: tuple[int, ...] = (0, 1, 2)
    test_size: int = 5000
    epochs: float = 3.0
    min_steps: int = 120
    batch: int = 64
    augment: bool = True


def _train_one(kind: str, data: ImageData, cfg: Config, seed: int) -> float:
    torch.manual_seed(seed)
    model = ResNet(**RESNET) if kind == "ResNet" else ViT(**VIT)
    n = len(data.x_train)
    epochs = max(cfg.epochs, cfg.min_steps * cfg.batch / n)       # the same for both models at this size
    tc = (ClassifyConfig(epochs=epochs, batch=cfg.batch, lr=0.05, augment=cfg.augment, seed=seed) if kind == "ResNet"
          else ClassifyConfig(epochs=epochs, batch=cfg.batch, lr=2e-3, optimizer="adamw", weight_decay=0.05,
                              augment=cfg.augment, seed=seed))
    return train_classifier(model, data, tc)["test_accuracy"]


@experiment("V3", "cnn-vs-vit-data",
            claim="with few training images the ResNet beats a ViT of the same size on Fashion-MNIST, and the gap "
                  "narrows as the training set grows (mean over seeds, min–max reported)",
            config=Config, quick={"sizes": "300,2000", "seeds": "0", "test_size": 1000, "epochs": 1, "min_steps": 60,
                                  "batch": 32, "augment": False},
            one_thread=True,
            headline={"gap_smallest": ("ResNet − ViT, fewest images", "{:+.1%}"),
                      "gap_largest": ("most images", "{:+.1%}")})
def cnn_vs_vit_data(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(cfg.sizes) < 2 or list(cfg.sizes) != sorted(cfg.sizes):
        raise ValueError(f"sizes {cfg.sizes}: need ≥ 2 training-set sizes in increasing order")
    params = {"ResNet": count_parameters(ResNet(**RESNET)), "ViT": count_parameters(ViT(**VIT))}
    acc: dict[str, dict[int, list[float]]] = {k: {n: [] for n in cfg.sizes} for k in params}
    for seed in cfg.seeds:
        for n in cfg.sizes:
            data = load_images(n, cfg.test_size, seed=1000 + seed)
            for kind in params:
                a = _train_one(kind, data, cfg, seed)
                acc[kind][n].append(a)
                run.log(model=kind, train_size=n, seed=seed, test_accuracy=a)
                run.print(f"seed {seed} n={n:6d} {kind:6s} {a:.4f}")

    def mean(v: list[float]) -> float:
        return sum(v) / len(v)

    gaps = {n: [r - v for r, v in zip(acc["ResNet"][n], acc["ViT"][n])] for n in cfg.sizes}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, kind in enumerate(params):
        m = [mean(acc[kind][n]) for n in cfg.sizes]
        lo = [m[j] - min(acc[kind][n]) for j, n in enumerate(cfg.sizes)]
        hi = [max(acc[kind][n]) - m[j] for j, n in enumerate(cfg.sizes)]
        axes[0].errorbar(cfg.sizes, m, yerr=[lo, hi], marker="o", capsize=3, c=f"C{i}",
                         label=f"{kind} ({params[kind]:,} params)")
    axes[0].set(xscale="log", title="test accuracy vs training-set size (min–max over seeds)",
                xlabel="training images", ylabel="test accuracy")
    axes[0].legend(fontsize=8)
    g = [mean(gaps[n]) for n in cfg.sizes]
    axes[1].errorbar(cfg.sizes, g, yerr=[[g[j] - min(gaps[n]) for j, n in enumerate(cfg.sizes)],
                                         [max(gaps[n]) - g[j] for j, n in enumerate(cfg.sizes)]],
                     marker="o", capsize=3, c="C2")
    axes[1].axhline(0, c="k", lw=0.5)
    axes[1].set(xscale="log", title="ResNet − ViT", xlabel="training images", ylabel="accuracy gap")
    run.savefig(fig, "accuracy_vs_data")

    small, large = cfg.sizes[0], cfg.sizes[-1]
    held = mean(gaps[small]) > 0 and mean(gaps[small]) > mean(gaps[large])
    metrics = {"gap_smallest": mean(gaps[small]), "gap_largest": mean(gaps[large]),
               "params_ResNet": params["ResNet"], "params_ViT": params["ViT"], "seeds": len(cfg.seeds)}
    for kind in params:
        for n in cfg.sizes:
            metrics[f"acc_{kind}_{n}"] = mean(acc[kind][n])
            metrics[f"acc_{kind}_{n}_min"], metrics[f"acc_{kind}_{n}_max"] = min(acc[kind][n]), max(acc[kind][n])
    for n in cfg.sizes:
        metrics[f"gap_{n}"] = mean(gaps[n])
        metrics[f"gap_{n}_min"], metrics[f"gap_{n}_max"] = min(gaps[n]), max(gaps[n])
    return Verdict(held, metrics, notes=f"sizes {cfg.sizes}, seeds {cfg.seeds}, ≥{cfg.epochs:g} epochs and "
                                        f"≥{cfg.min_steps} updates of {cfg.batch} per run; gap = ResNet − ViT accuracy")
