"""Training, scoring and saving the V4 detectors (models/detection.py) on the shapes scenes.

A run folder of V4 holds detector.json and <name>.pt per detector (vision/saved.py);
`deepatlas detect` reads them back.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.data.shapes import ShapesData
from deepatlas.metrics.detection import mean_average_precision
from deepatlas.models.detection import DETECTORS
from deepatlas.vision.saved import load_models, save_models

MANIFEST = "detector.json"


def batch_indices(n: int, step: int, batch: int, seed: int) -> Tensor:
    """The scenes of training step `step`: a function of (seed, step) only, so runs repeat exactly."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n, (batch,), generator=g)


def train_detector(model: nn.Module, data: ShapesData, steps: int, batch: int, lr: float, seed: int = 0,
                   run: Run | None = None, warmup: int = 50) -> list[float]:
    """AdamW with a cosine schedule on model.loss(images, targets); returns the losses."""
    def get_batch(step: int, micro: int) -> tuple[Tensor, list[dict[str, Tensor]]]:
        idx = batch_indices(len(data), step, batch, seed)
        return data.images[idx], data.targets(idx)

    cfg = TrainConfig(steps=steps, lr=lr, warmup=min(warmup, steps // 5), schedule="cosine", optimizer="adamw",
                      weight_decay=1e-4, clip=5.0, log_every=max(1, steps // 20), seed=seed, progress=False)
    return train(model, lambda m, b: m.loss(*b), get_batch, cfg, run=run).losses


@torch.no_grad()
def predict_all(model: nn.Module, images: Tensor, batch: int = 50) -> list[dict[str, Tensor]]:
    model.eval()
    out: list[dict[str, Tensor]] = []
    for s in range(0, len(images), batch):
        out += model.predict(images[s:s + batch])
    return out


def evaluate_detector(model: nn.Module, data: ShapesData) -> dict[str, float]:
    """COCO mAP@[.5:.95], mAP@0.5, mAP@0.75 on `data`."""
    m = mean_average_precision(predict_all(model, data.images), data.targets())
    return {"map": m["map"], "map_50": m["map_50"], "map_75": m["map_75"]}


def images_per_second(models: dict[str, nn.Module], images: Tensor, rounds: int = 5, batch: int = 50,
                      predict: Callable[[nn.Module, Tensor, int], Any] | None = None) -> dict[str, float]:
    """Inference speed of each model (predict_all by default), interleaved round by round so load
    on the machine hits all alike; the median round per model."""
    predict = predict or predict_all
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            predict(model, images, batch)
            times[name].append(time.perf_counter() - t0)
    return {k: len(images) / sorted(v)[len(v) // 2] for k, v in times.items()}


def save_detectors(directory: Path, models: dict[str, tuple[nn.Module, dict[str, Any]]], data: dict[str, Any]) -> None:
    """models: name (one of DETECTORS) -> (model, its constructor kwargs); data: the test split's shapes settings."""
    save_models(directory, MANIFEST, "detection", {k: (m, k, kw) for k, (m, kw) in models.items()}, data)


def load_detectors(directory: Path) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """(name -> model in eval mode, the manifest) from a folder save_detectors wrote."""
    return load_models(directory, MANIFEST, DETECTORS)


CLASS_COLOURS = ("#ff7f0e", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def draw_detections(ax: Any, image: Tensor, pred: dict[str, Tensor] | None, target: dict[str, Tensor] | None = None,
                    score_min: float = 0.4, title: str = "") -> None:
    """Show image (3, H, W); ground truth dashed white, predictions (score ≥ score_min) solid, per class colour."""
    from matplotlib.patches import Rectangle

    from deepatlas.data.shapes import SHAPES

    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    # pixel i covers [i − ½, i + ½] in imshow's coordinates; box edges are at integers
    if target is not None:
        for b in target["boxes"].tolist():
            ax.add_patch(Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False, ec="white",
                                   ls="--", lw=1))
    if pred is not None:
        for b, s, c in zip(pred["boxes"].tolist(), pred["scores"].tolist(), pred["labels"].tolist()):
            if s < score_min:
                continue
            colour = CLASS_COLOURS[(c - 1) % len(CLASS_COLOURS)]
            ax.add_patch(Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1], fill=False, ec=colour, lw=1.5))
            ax.text(b[0] - 0.5, b[1] - 1, f"{SHAPES[c - 1]} {s:.2f}", color=colour, fontsize=6,
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "lw": 0})
    ax.set_title(title, fontsize=8)
    ax.axis("off")
