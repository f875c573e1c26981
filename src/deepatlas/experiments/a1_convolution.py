"""A1: convolution from scratch (im2col + GEMM) equals torch's, and the backbone evolution LeNet → VGG → ResNet.

Part A (exact): our conv2d (deepatlas.nn.conv, any stride/padding/dilation/groups) and max/avg pooling
against F.conv2d / F.max_pool2d / F.avg_pool2d, forward and backward (autograd through our im2col
vs torch's kernels), in fp32; and the receptive-field calculator on AlexNet (195 px at pool5) and
VGG-16 (212 px), the values of Araujo et al. 2019.

Part B (the evolution, measured): LeNet-5 (1998), a VGG-style net with BatchNorm (2015) and a small
ResNet (2016) — and, with models=...,Swin, V2's small Swin (2021) — trained with the same recipe (SGD +
momentum, cosine schedule, random crop + flip, label smoothing, bf16 autocast where the CPU has it) on Fashion-MNIST;
one table of test accuracy, parameters and time per epoch. Held when the parity is exact (≤ 1e-4), the receptive fields are
right, and the ResNet reaches `resnet_bar` test accuracy (0.93 in the full run) and beats LeNet-5.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepatlas.core.hardware import speed_precision
from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.models.cnn import VGG, LeNet5, ResNet, count_parameters
from deepatlas.models.swin import SwinClassifier
from deepatlas.nn.conv import Layer, avg_pool2d, conv2d, max_pool2d, receptive_field
from deepatlas.vision.classify import ClassifyConfig, load_images, save_model, train_classifier

# the four backbones of the table: name -> (family for save_model, constructor arguments)
BACKBONES = {
    "LeNet-5": ("lenet", {}),
    "VGG": ("vgg", {"widths": (16, 32, 64), "depth": 2}),
    # 32-64-128 wide: at 16-32-64 (78k parameters) 10 epochs reached 92.1%, still underfitting
    "ResNet": ("resnet", {"depths": (1, 1, 1), "widths": (32, 64, 128)}),
    # 4×4 patches -> a 7×7 grid, padded to 8×8 for 4×4 windows (shifted in every second block), merged to 4×4
    "Swin": ("swin", {"patch_size": 4, "embed_dim": 48, "depths": (2, 2), "heads": (3, 6), "window": 4}),
}


@dataclass
class Config:
    train_size: int = 60000
    test_size: int = 10000
    epochs: float = 14.0           # 8 epochs: ResNet 92.5%; 12 epochs with label smoothing 93.2%
    batch: int = 128
    lr: float = 0.1
    label_smoothing: float = 0.1
    augment: bool = True
    # "auto": bf16 autocast where the CPU multiplies bf16 in hardware (oneDNN's AMX convolutions,
    # 2-3x fp32), fp32 elsewhere (an AVX2 CPU: bf16 was 10x slower, 194 s against 20 s for the quick run)
    precision: str = "auto"
    channels_last: bool = True
    swin_lr: float = 1e-3          # Swin trains with AdamW (as its paper); the CNNs with SGD
    # Swin is V2's (`deepatlas run swin-windows`: 60k images, 8 epochs); add "Swin" here to train it in
    # this table too (about 20 s more per epoch)
    models: tuple[str, ...] = ("LeNet-5", "VGG", "ResNet")
    resnet_bar: float = 0.93
    parity_tol: float = 1e-4
    seed: int = 0


def conv_parity(seed: int = 0) -> float:
    """max |ours − torch| over outputs and input/weight/bias gradients of several conv and pool cases."""
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    cases = [(3, 8, 3, 1, 1, 1, 1), (4, 8, 3, 2, 1, 1, 2), (8, 8, 3, 1, 2, 2, 8), (3, 6, 5, 2, 2, 1, 1), (4, 4, 1, 1, 0, 1, 1)]
    for c_in, c_out, k, s, p, d, groups in cases:
        x = torch.randn(2, c_in, 13, 11, generator=g)
        w = torch.randn(c_out, c_in // groups, k, k, generator=g)
        b = torch.randn(c_out, generator=g)
        outs = []
        for fn in (conv2d, F.conv2d):
            ts = [t.clone().requires_grad_(True) for t in (x, w, b)]
            y = fn(*ts, stride=s, padding=p, dilation=d, groups=groups)
            (y * y.detach().sin()).sum().backward()
            outs.append([y.detach()] + [t.grad for t in ts])
        worst = max(worst, max((a - r).abs().max().item() for a, r in zip(*outs)))
    x = torch.randn(2, 3, 12, 12, generator=g)
    for ours, ref in ((max_pool2d, F.max_pool2d), (avg_pool2d, F.avg_pool2d)):
        outs = []
        for fn in (ours, ref):
            xi = x.clone().requires_grad_(True)
            y = fn(xi, 3, 2, 1)
            (y * y.detach().cos()).sum().backward()
            outs.append([y.detach(), xi.grad])
        worst = max(worst, max((a - r).abs().max().item() for a, r in zip(*outs)))
    return worst


def known_receptive_fields() -> dict[str, float]:
    alexnet = [Layer(11, 4), Layer(3, 2), Layer(5, 1, 2), Layer(3, 2)] + [Layer(3, 1, 1)] * 3 + [Layer(3, 2)]
    vgg16 = [layer for n in (2, 2, 3, 3, 3) for layer in [Layer(3, 1, 1)] * n + [Layer(2, 2)]]
    return {"alexnet": receptive_field(alexnet)[-1]["receptive_field"],
            "vgg16": receptive_field(vgg16)[-1]["receptive_field"]}


def build(name: str) -> torch.nn.Module:
    kind, kwargs = BACKBONES[name]
    return {"lenet": LeNet5, "vgg": VGG, "resnet": ResNet, "swin": SwinClassifier}[kind](**kwargs)


@experiment("A1", "convolution-backbones",
            claim="im2col conv2d and pooling equal torch's forward and backward (≤1e-4) and the receptive-field "
                  "calculator gives AlexNet 195 / VGG-16 212 px; on Fashion-MNIST the ResNet reaches ≥93% test "
                  "accuracy and beats LeNet-5 (table: accuracy, parameters, time per epoch)",
            config=Config, quick={"train_size": 2000, "test_size": 1000, "epochs": 2, "batch": 32, "lr": 0.05,
                                  "augment": False, "resnet_bar": 0.7,
                                  "models": "LeNet-5,ResNet"},
            headline={"acc_ResNet": ("ResNet test accuracy", "{:.1%}"), "acc_LeNet-5": ("LeNet-5", "{:.1%}"),
                      "conv_max_diff": ("im2col vs torch", "{:.1e}")})
def convolution_backbones(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unknown = [m for m in cfg.models if m not in BACKBONES]
    if unknown or "ResNet" not in cfg.models or "LeNet-5" not in cfg.models:
        raise ValueError(f"models {cfg.models}: need 'LeNet-5' and 'ResNet', choose from {', '.join(BACKBONES)}")
    diff = conv_parity(cfg.seed)
    rf = known_receptive_fields()
    run.print(f"im2col conv/pool vs torch: max diff {diff:.2e}; receptive fields {rf}")
    precision = speed_precision(cfg.precision)
    data = load_images(cfg.train_size, cfg.test_size, cfg.seed)
    rows, curves = {}, {}
    for name in cfg.models:
        torch.manual_seed(cfg.seed)
        model = build(name)
        swin = name == "Swin"
        tc = ClassifyConfig(epochs=cfg.epochs, batch=cfg.batch, lr=cfg.swin_lr if swin else cfg.lr, optimizer="adamw" if swin else "sgd",
                            weight_decay=0.05 if swin else 5e-4, label_smoothing=cfg.label_smoothing,
                            augment=cfg.augment, seed=cfg.seed, precision=precision,
                            channels_last=cfg.channels_last and not swin)
        start = time.time()
        r = train_classifier(model, data, tc)
        rows[name] = {"acc": r["test_accuracy"], "params": count_parameters(model),
                      "s_per_epoch": r["seconds_per_epoch"], "cpu_s_per_epoch": r["cpu_seconds_per_epoch"]}
        curves[name] = r["losses"]
        run.log(model=name, **rows[name], train_accuracy=r["train_accuracy"], wall_s=time.time() - start)
        run.print(f"{name:8s} test acc {r['test_accuracy']:.4f}  params {rows[name]['params']:>7,}  "
                  f"{r['seconds_per_epoch']:.1f} s/epoch ({r['cpu_seconds_per_epoch']:.1f} CPU s)")
        if name == "ResNet":
            save_model(run.dir, BACKBONES[name][0], BACKBONES[name][1], model, test_size=cfg.test_size)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    names = list(rows)
    axes[0].bar(names, [rows[n]["acc"] for n in names], color=[f"C{i}" for i in range(len(names))])
    lo = min(rows[n]["acc"] for n in names)
    axes[0].set(title="test accuracy", ylim=(max(0.0, lo - 0.05), 1.0))
    for i, n in enumerate(names):
        axes[0].text(i, rows[n]["acc"], f"{rows[n]['acc']:.1%}", ha="center", va="bottom", fontsize=8)
        axes[1].scatter(rows[n]["params"], rows[n]["s_per_epoch"], c=f"C{i}", s=40, label=n)
        k = max(1, len(curves[n]) // 50)   # smoothed: mean of each k steps
        c = torch.tensor(curves[n][: len(curves[n]) // k * k]).view(-1, k).mean(1)
        axes[2].plot(torch.arange(len(c)) * k, c, c=f"C{i}", label=n)
    axes[1].set(xscale="log", title="parameters vs seconds per epoch", xlabel="parameters", ylabel="s / epoch")
    axes[1].legend(fontsize=8)
    axes[2].set(title="training loss", xlabel="step", yscale="log")
    axes[2].legend(fontsize=8)
    run.savefig(fig, "backbones")

    table = "| model | test acc | params | s/epoch |\n|---|---|---|---|\n" + "".join(
        f"| {n} | {rows[n]['acc']:.2%} | {rows[n]['params']:,} | {rows[n]['s_per_epoch']:.1f} |\n" for n in names)
    run.print(table)
    held = (diff <= cfg.parity_tol and rf == {"alexnet": 195, "vgg16": 212}
            and rows["ResNet"]["acc"] >= cfg.resnet_bar and rows["ResNet"]["acc"] > rows["LeNet-5"]["acc"])
    metrics = {"conv_max_diff": diff, "rf_alexnet": rf["alexnet"], "rf_vgg16": rf["vgg16"], "table": table,
               "epochs": cfg.epochs, "train_size": cfg.train_size, "precision_used": precision}
    for n in names:
        metrics.update({f"acc_{n}": rows[n]["acc"], f"params_{n}": rows[n]["params"],
                        f"s_per_epoch_{n}": rows[n]["s_per_epoch"], f"cpu_s_per_epoch_{n}": rows[n]["cpu_s_per_epoch"]})
    return Verdict(held, metrics, notes=f"{cfg.epochs:g} epochs on {cfg.train_size} images, same SGD recipe for the "
                                        f"CNNs (AdamW for Swin), label smoothing {cfg.label_smoothing:g}, {precision}"
                                        f"{' channels-last' if cfg.channels_last else ''}, {torch.get_num_threads()} "
                                        f"threads; ResNet bar {cfg.resnet_bar:.0%}. Seconds per epoch are wall time; "
                                        "cpu_s_per_epoch is the CPU time.")
