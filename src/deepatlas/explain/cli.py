"""`deepatlas explain RUN_DIR --image N [--method gradcam|saliency|smoothgrad|rollout] [--layer NAME] [--out FILE.png]`

Writes the heat map of test image N (Fashion-MNIST's test split) for the model a run of A1, V1, V2
or V6 saved (model.json + model.pt). Bad input ends with a one-line error and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

METHODS = ("gradcam", "saliency", "smoothgrad", "rollout")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("explain", help="heat map of where a trained image model looks (Grad-CAM, saliency, "
                                              "attention rollout)")
    p.add_argument("run_dir", help="a run folder of A1, V1, V2 or V6 (holds model.json and model.pt)")
    p.add_argument("--image", type=int, required=True, help="index into the Fashion-MNIST test set")
    p.add_argument("--method", default=None, choices=METHODS,
                   help="default: gradcam for CNNs, rollout for a ViT, saliency otherwise")
    p.add_argument("--layer", default=None, help="Grad-CAM layer (default: the last feature map)")
    p.add_argument("--target", type=int, default=None, help="class to explain (default: the predicted one)")
    p.add_argument("--out", default=None, help="PNG to write (default: RUN_DIR/explain_<method>_<N>.png)")
    p.set_defaults(func=run_explain)


def supported(kind: str) -> tuple[str, ...]:
    if kind == "vit":
        return ("rollout", "saliency", "smoothgrad")
    if kind == "swin":
        return ("saliency", "smoothgrad")
    return ("gradcam", "saliency", "smoothgrad")


def explain(run_dir: Path, image: int, method: str | None = None, layer: str | None = None,
            target: int | None = None, out: Path | None = None) -> tuple[Path, str, int]:
    """Write the overlay PNG; return (path, method used, explained class). Raises ValueError on bad input."""
    import torch

    from deepatlas.data.fashion_mnist import CLASS_NAMES, fashion_mnist_float
    from deepatlas.explain.gradcam import feature_layers, grad_cam
    from deepatlas.explain.overlay import overlay_png
    from deepatlas.explain.rollout import attention_rollout
    from deepatlas.explain.saliency import saliency
    from deepatlas.vision.classify import load_model

    model, meta = load_model(Path(run_dir))
    kind = meta["kind"]
    method = method or supported(kind)[0]
    if method not in supported(kind):
        raise ValueError(f"method {method!r} does not apply to this {kind} model; valid: {', '.join(supported(kind))}")
    if layer is not None and method != "gradcam":
        raise ValueError(f"--layer is for --method gradcam, not {method}")
    x_test, _ = fashion_mnist_float("test")
    if not 0 <= image < len(x_test):
        raise ValueError(f"--image {image} out of range: the test set has {len(x_test)} images (0..{len(x_test) - 1})")
    if target is not None and not 0 <= target < len(CLASS_NAMES):
        raise ValueError(f"--target {target} out of range: classes are 0..{len(CLASS_NAMES) - 1}")
    x = x_test[image:image + 1]
    with torch.no_grad():
        predicted = int(model(x).argmax(-1))
    cls = predicted if target is None else target
    if method == "gradcam":
        layer = layer or feature_layers(model, x)[-1]
        heat, _ = grad_cam(model, x, layer, cls)
    elif method == "rollout":
        heat = attention_rollout(model, x)
    else:
        heat, _ = saliency(model, x, cls, smooth=10 if method == "smoothgrad" else 0)
    out = Path(out) if out else Path(run_dir) / f"explain_{method}_{image}.png"
    what = f"{method}{f' at {layer}' if method == 'gradcam' else ''}"
    overlay_png(x[0], heat[0], out, f"test image {image}: {what} for '{CLASS_NAMES[cls]}' "
                                    f"(predicted '{CLASS_NAMES[predicted]}')")
    return out, what, cls


def run_explain(args: argparse.Namespace) -> int:
    from deepatlas.explain.gradcam import UnknownLayer
    from deepatlas.vision.classify import NoModelError

    try:
        path, what, cls = explain(Path(args.run_dir), args.image, args.method, args.layer, args.target, args.out)
    except (NoModelError, UnknownLayer, ValueError, FileNotFoundError) as err:
        print(f"deepatlas explain: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({what}, class {cls})")
    return 0
