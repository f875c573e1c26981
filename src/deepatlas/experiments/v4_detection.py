"""V4: one-stage vs two-stage object detection on generated shape scenes.

The seeds' claim (Advanced DL ch. 15; Redmon et al. 2016 vs Ren et al. 2015): a one-stage detector
(YOLO: one pass, every grid cell predicts boxes, objectness and classes) is much faster than a
two-stage one (R-CNN family: a region proposal network, then RoIAlign and a box head per
proposal), which pays for its second look with time and usually gains accuracy.

Setup: both detectors on the same A1 ResNet backbone and training budget (AdamW, cosine, the
same steps and batches) on the shapes scenes (data/shapes.py: 1–4 circles/squares/triangles/stars
per image, occluding, on textured noise); COCO mAP@[.5:.95] and mAP@0.5 on the test split with our
metric (equal to pycocotools, tests/metrics/test_detection_map.py); inference images/s measured
interleaved on the same test images. Held when both detectors learn (mAP@0.5 ≥ min_map50) and the
one-stage detector is faster; which one is more accurate is measured and reported, not assumed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.data.shapes import shapes_dataset
from deepatlas.models.cnn import count_parameters
from deepatlas.models.detection import DETECTORS
from deepatlas.vision.detection import (draw_detections, evaluate_detector, images_per_second, predict_all,
                                        save_detectors, train_detector)


@dataclass
class Config:
    image_size: int = 32
    train_size: int = 2000
    test_size: int = 200
    max_objects: int = 4
    steps: int = 800
    batch: int = 16
    lr: float = 3e-3
    widths: tuple[int, ...] = (16, 32, 64)
    min_map50: float = 0.5
    speed_rounds: int = 5
    seed: int = 0


@experiment("V4", "detect-shapes",
            claim="a YOLO-style one-stage detector runs faster than an R-CNN-style two-stage detector "
                  "(RPN + RoIAlign + box head) on the same backbone, and both learn to find the shapes "
                  "(test mAP@0.5 ≥ min_map50); their COCO mAP is measured side by side",
            config=Config, one_thread=True,
            quick={"train_size": 256, "test_size": 64, "max_objects": 3, "steps": 120, "batch": 8, "widths": "8,16,32",
                   "min_map50": 0.15, "speed_rounds": 3},
            headline={"map50_one_stage": ("one-stage mAP@0.5", "{:.3f}"),
                      "map50_two_stage": ("two-stage mAP@0.5", "{:.3f}"),
                      "map_one_stage": ("one-stage mAP@[.5:.95]", "{:.3f}"),
                      "map_two_stage": ("two-stage mAP@[.5:.95]", "{:.3f}"),
                      "speedup": ("one-stage images/s ÷ two-stage", "{:.1f}×")})
def detect_shapes(cfg: Config, run: Run) -> Verdict:
    data_kw = {"size": cfg.image_size, "seed": cfg.seed, "max_objects": cfg.max_objects}
    train = shapes_dataset("train", n=cfg.train_size, **data_kw)
    test = shapes_dataset("test", n=cfg.test_size, **data_kw)
    run.print(f"shapes: {len(train)} training scenes, {len(test)} test scenes, {cfg.image_size}×{cfg.image_size}, "
              f"{sum(len(t) for t in test.labels)} test objects")
    models, metrics = {}, {}
    for name, cls in DETECTORS.items():
        torch.manual_seed(cfg.seed)
        kwargs = {"image_size": cfg.image_size, "widths": list(cfg.widths)}
        model = cls(**kwargs)
        t0 = time.perf_counter()
        losses = train_detector(model, train, cfg.steps, cfg.batch, cfg.lr, cfg.seed, run)
        seconds = time.perf_counter() - t0
        m = evaluate_detector(model, test)
        key = name.replace("-", "_")
        metrics.update({f"map_{key}": m["map"], f"map50_{key}": m["map_50"], f"map75_{key}": m["map_75"],
                        f"params_{key}": count_parameters(model), f"train_s_{key}": seconds,
                        f"final_loss_{key}": sum(losses[-20:]) / len(losses[-20:])})
        models[name] = (model, kwargs)
        run.print(f"{name}: mAP {m['map']:.3f}, mAP@0.5 {m['map_50']:.3f}, mAP@0.75 {m['map_75']:.3f}, "
                  f"{count_parameters(model):,} params, trained in {seconds:.0f} s")
    speed = images_per_second({k: v[0] for k, v in models.items()}, test.images, rounds=cfg.speed_rounds)
    metrics.update({"images_s_one_stage": speed["one-stage"], "images_s_two_stage": speed["two-stage"],
                    "speedup": speed["one-stage"] / speed["two-stage"]})
    run.print("\n| detector | mAP@[.5:.95] | mAP@0.5 | mAP@0.75 | params | images/s |\n|---|---|---|---|---|---|")
    for name in models:
        k = name.replace("-", "_")
        run.print(f"| {name} | {metrics[f'map_{k}']:.3f} | {metrics[f'map50_{k}']:.3f} | {metrics[f'map75_{k}']:.3f} "
                  f"| {metrics[f'params_{k}']:,} | {metrics[f'images_s_{k}']:.0f} |")
    save_detectors(run.dir, models, {**data_kw, "n": cfg.test_size})
    _picture(run, models, test)
    learned = min(metrics["map50_one_stage"], metrics["map50_two_stage"]) >= cfg.min_map50
    faster = metrics["speedup"] > 1.0
    better = "two-stage" if metrics["map_two_stage"] > metrics["map_one_stage"] else "one-stage"
    return Verdict(held=learned and faster, metrics=metrics,
                   notes=f"one-stage {metrics['speedup']:.1f}× the images/s of two-stage; the {better} detector has "
                         f"the higher mAP@[.5:.95] ({metrics['map_one_stage']:.3f} vs {metrics['map_two_stage']:.3f}); "
                         f"both mAP@0.5 ≥ {cfg.min_map50}: {learned}")


def _picture(run: Run, models: dict, test, n: int = 6) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(models), n, figsize=(1.9 * n, 2.1 * len(models)))
    for r, (name, (model, _)) in enumerate(models.items()):
        preds = predict_all(model, test.images[:n])
        for i in range(n):
            draw_detections(axes[r, i], test.images[i], preds[i], test.targets([i])[0],
                            title=f"{name}, test {i}" if i == 0 else f"test {i}")
    fig.suptitle("predictions with score ≥ 0.4 (solid) and ground truth (dashed)", fontsize=9)
    run.savefig(fig, "predictions")
