"""Training, scoring and saving the V5 segmenters (models/segmentation.py) on the shapes' semantic masks.

A run folder of V5 holds segmenter.json ({"kind": "segmentation", "data": shapes settings,
"models": {name: {"family", "kwargs"}}}) and <name>.pt per model; `deepatlas segment` reads them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.data.shapes import ShapesData
from deepatlas.metrics.segmentation import segmentation_scores
from deepatlas.models.segmentation import SEGMENTERS
from deepatlas.vision.detection import batch_indices

MANIFEST = "segmenter.json"


def class_weights(semantic: Tensor, num_classes: int, power: float = 0.5) -> Tensor:
    """w_c ∝ (median frequency / frequency_c)^power — median-frequency balancing (Eigen & Fergus
    2015) softened by `power`: background covers ~90 % of the pixels and would otherwise dominate."""
    freq = torch.bincount(semantic.flatten(), minlength=num_classes).double().clamp(min=1)
    return (freq.median() / freq).pow(power).float()


def train_segmenter(model: nn.Module, data: ShapesData, steps: int, batch: int, lr: float, seed: int = 0,
                    run: Run | None = None, balance: float = 0.5) -> list[float]:
    """Per-pixel cross-entropy (class-weighted by class_weights(power=balance); 0 = plain), AdamW,
    cosine schedule; returns the losses."""
    weight = class_weights(data.semantic, data.num_classes, balance)

    def get_batch(step: int, micro: int) -> tuple[Tensor, Tensor]:
        idx = batch_indices(len(data), step, batch, seed)
        return data.images[idx], data.semantic[idx]

    def loss_fn(m: nn.Module, b: tuple[Tensor, Tensor]) -> Tensor:
        # Σ_pixels w_y · (−log p_y) / Σ_pixels w_y
        return F.cross_entropy(m(b[0]), b[1], weight=weight)

    cfg = TrainConfig(steps=steps, lr=lr, warmup=min(50, steps // 5), schedule="cosine", optimizer="adamw",
                      weight_decay=1e-4, clip=5.0, log_every=max(1, steps // 20), seed=seed, progress=False)
    return train(model, loss_fn, get_batch, cfg, run=run).losses


@torch.no_grad()
def predict_masks(model: nn.Module, images: Tensor, batch: int = 100) -> Tensor:
    """(N, 3, H, W) -> (N, H, W) int64 class per pixel."""
    model.eval()
    return torch.cat([model(images[s:s + batch]).argmax(1) for s in range(0, len(images), batch)])


def evaluate_segmenter(model: nn.Module, data: ShapesData, boundary_width: int = 1) -> dict[str, float]:
    return segmentation_scores(predict_masks(model, data.images), data.semantic, data.num_classes, boundary_width)


def save_segmenters(directory: Path, models: dict[str, tuple[nn.Module, str, dict[str, Any]]],
                    data: dict[str, Any]) -> None:
    """models: name -> (model, family in SEGMENTERS, constructor kwargs); data: the test split's settings."""
    directory = Path(directory)
    meta = {"kind": "segmentation", "data": data,
            "models": {k: {"family": fam, "kwargs": kw} for k, (_, fam, kw) in models.items()}}
    (directory / MANIFEST).write_text(json.dumps(meta, indent=2))
    for name, (model, _, _) in models.items():
        torch.save(model.state_dict(), directory / f"{name}.pt")


class NotASegmentationRun(ValueError):
    """The folder is not a V5 run (no segmenter.json)."""


def load_segmenters(directory: Path) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise NotASegmentationRun(f"{directory} is not a folder; give a run folder of V5 (segment-shapes)")
    if not path.is_file():
        other = " (it is a detection run: use `deepatlas detect`)" if (directory / "detector.json").is_file() else ""
        raise NotASegmentationRun(f"{directory} holds no segmenters ({MANIFEST}){other}; "
                                  "runs of V5 (segment-shapes) save them")
    meta = json.loads(path.read_text())
    models = {}
    for name, spec in meta["models"].items():
        if spec.get("family") not in SEGMENTERS:
            raise NotASegmentationRun(f"{path}: family {spec.get('family')!r}; valid: {', '.join(SEGMENTERS)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["kwargs"].items()}
        model = SEGMENTERS[spec["family"]](**kwargs)
        model.load_state_dict(torch.load(directory / f"{name}.pt", map_location="cpu", weights_only=True))
        models[name] = model.eval()
    return models, meta


def mask_colours(mask: Tensor) -> Tensor:
    """(H, W) class ids -> (H, W, 3) colours: background black, then one colour per shape."""
    palette = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.5, 0.05], [0.12, 0.47, 0.71], [0.17, 0.63, 0.17],
                            [0.84, 0.15, 0.16], [0.58, 0.40, 0.74]])
    return palette[mask.clamp(0, len(palette) - 1)]
