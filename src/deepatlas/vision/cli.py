"""`deepatlas detect RUN_DIR --image N [--model NAME] [--score S] [--out FILE.png]` and
`deepatlas segment RUN_DIR --image N [--model NAME] [--out FILE.png]`.

Draw the predictions of the detectors a V4 run saved (detector.json + <name>.pt), or of the
segmenters a V5 run saved (segmenter.json + <name>.pt), on scene N of that run's test split of
the shapes data (regenerated from the saved settings: the scenes are a function of the seed).
Bad input ends with a one-line error and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("detect", help="draw a trained V4 detector's boxes on a test scene of the shapes data")
    p.add_argument("run_dir", help="a run folder of V4 (detect-shapes): holds detector.json")
    p.add_argument("--image", type=int, required=True, help="index into the run's test split")
    p.add_argument("--model", default=None, help="one detector of the run (default: all, side by side)")
    p.add_argument("--score", type=float, default=0.4, help="draw predictions scoring at least this (default 0.4)")
    p.add_argument("--out", default=None, help="PNG to write (default: RUN_DIR/detect_<N>.png)")
    p.set_defaults(func=run_detect)
    p = subparsers.add_parser("segment", help="draw a trained V5 segmenter's masks on a test scene of the shapes data")
    p.add_argument("run_dir", help="a run folder of V5 (segment-shapes): holds segmenter.json")
    p.add_argument("--image", type=int, required=True, help="index into the run's test split")
    p.add_argument("--model", default=None, help="one segmenter of the run (default: all, side by side)")
    p.add_argument("--out", default=None, help="PNG to write (default: RUN_DIR/segment_<N>.png)")
    p.set_defaults(func=run_segment)


def _pick(models: dict, name: str | None, what: str) -> dict:
    if name is None:
        return models
    if name not in models:
        raise ValueError(f"--model {name!r}: this run has no such {what}; valid: {', '.join(models)}")
    return {name: models[name]}


def _scene(meta: dict, image: int):
    from deepatlas.data.shapes import shapes_dataset

    data = shapes_dataset("test", **meta["data"])
    if not 0 <= image < len(data):
        raise ValueError(f"--image {image} out of range: the run's test split has {len(data)} scenes (0..{len(data) - 1})")
    return data, data[image]


def detect(run_dir: Path, image: int, model: str | None = None, score: float = 0.4, out: Path | None = None
           ) -> tuple[Path, dict[str, int]]:
    """Write the picture; return (path, detections drawn per model). Raises ValueError on bad input."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepatlas.vision.detection import draw_detections, load_detectors

    if not 0.0 <= score <= 1.0:
        raise ValueError(f"--score {score}; valid: 0..1")
    models, meta = load_detectors(Path(run_dir))
    models = _pick(models, model, "detector")
    data, scene = _scene(meta, image)
    target = {"boxes": scene.boxes, "labels": scene.labels}
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.4), squeeze=False)
    drawn = {}
    for ax, (name, m) in zip(axes[0], models.items()):
        pred = m.predict(scene.image[None])[0]
        drawn[name] = int((pred["scores"] >= score).sum())
        draw_detections(ax, scene.image, pred, target, score, f"{name}: {drawn[name]} boxes ≥ {score:g}")
    fig.suptitle(f"test scene {image} (ground truth dashed)", fontsize=9)
    out = Path(out) if out else Path(run_dir) / f"detect_{image}.png"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out, drawn


def segment(run_dir: Path, image: int, model: str | None = None, out: Path | None = None) -> tuple[Path, dict[str, float]]:
    """Write image, true mask and each model's mask; return (path, pixel accuracy per model)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepatlas.vision.segmentation import load_segmenters, mask_colours, predict_masks

    models, meta = load_segmenters(Path(run_dir))
    models = _pick(models, model, "segmenter")
    data, scene = _scene(meta, image)
    fig, axes = plt.subplots(1, len(models) + 2, figsize=(2.3 * (len(models) + 2), 2.6))
    axes[0].imshow(scene.image.permute(1, 2, 0).numpy(), interpolation="nearest")
    axes[0].set_title(f"test scene {image}", fontsize=8)
    axes[1].imshow(mask_colours(scene.semantic).numpy(), interpolation="nearest")
    axes[1].set_title("truth", fontsize=8)
    acc = {}
    for ax, (name, m) in zip(axes[2:], models.items()):
        pred = predict_masks(m, scene.image[None])[0]
        acc[name] = float((pred == scene.semantic).float().mean())
        ax.imshow(mask_colours(pred).numpy(), interpolation="nearest")
        ax.set_title(f"{name} ({acc[name]:.1%} px)", fontsize=8)
    for ax in axes:
        ax.axis("off")
    out = Path(out) if out else Path(run_dir) / f"segment_{image}.png"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out, acc


def run_detect(args: argparse.Namespace) -> int:
    try:
        path, drawn = detect(Path(args.run_dir), args.image, args.model, args.score, args.out)
    except (ValueError, FileNotFoundError) as err:
        print(f"deepatlas detect: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({', '.join(f'{k}: {v} boxes' for k, v in drawn.items())})")
    return 0


def run_segment(args: argparse.Namespace) -> int:
    try:
        path, acc = segment(Path(args.run_dir), args.image, args.model, args.out)
    except (ValueError, FileNotFoundError) as err:
        print(f"deepatlas segment: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({', '.join(f'{k}: {v:.1%} pixels right' for k, v in acc.items())})")
    return 0
