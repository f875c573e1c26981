"""Training, scoring and saving the V5 segmenters (models/segmentation.py) on the shapes' semantic masks.

A run folder of V5 holds segmenter.json and <name>.pt per model (vision/saved.py);
`deepatlas segment` reads them.
"""
from __future__ import annotations

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
from deepatlas.vision.saved import load_models, save_models

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
    save_models(directory, MANIFEST, "segmentation", models, data)


def load_segmenters(directory: Path) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    return load_models(directory, MANIFEST, SEGMENTERS)


def mask_colours(mask: Tensor) -> Tensor:
    """(H, W) class ids -> (H, W, 3) colours: background black, then one colour per shape."""
    palette = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.5, 0.05], [0.12, 0.47, 0.71], [0.17, 0.63, 0.17],
                            [0.84, 0.15, 0.16], [0.58, 0.40, 0.74]])
    return palette[mask.clamp(0, len(palette) - 1)]
