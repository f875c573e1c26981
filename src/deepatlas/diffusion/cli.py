"""`deepatlas generate-images RUN_DIR [--n 64] [--sampler ddpm|ddim] [--steps 50] [--guidance 3] [--label 7]
[--prompt "a red circle"] [--negative "a blue shape"] [--eta 0] [--seed 0] --out grid.png`

Samples a grid from the diffusion model a G8 run saved (RUN_DIR/diffusion.json + diffusion.pt,
see diffusion/store.py). A class-conditional model samples --label (a class index or a
Fashion-MNIST name such as "sneaker"; all ten classes in turn without it) with classifier-free
guidance scale --guidance. A text-to-image run of G9 (RUN_DIR/text2image.json + text2image.pt,
diffusion/latent.py) samples --prompt (all colour–shape captions in turn without it), with
--negative in the unconditional branch of the guidance: ε̃ = ε_neg + w (ε_cond − ε_neg).
Bad input ends with a one-line error and exit status 2.

The conditioning is resolved in one place (`conditioning`), so another kind of model (e.g. a
latent diffusion model with a --prompt) adds its option there without touching the sampling.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

SAMPLERS = ("ddpm", "ddim")
DEFAULT_GUIDANCE = 3.0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("generate-images",
                              help="sample a grid of images from a trained diffusion run (G8) or text-to-image run (G9)")
    p.add_argument("run_dir", help="a run folder of the G8 experiment (diffusion.json and diffusion.pt) or of G9 "
                                   "latent-diffusion (text2image.json and text2image.pt)")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--sampler", default="ddim", choices=SAMPLERS, help="ddim (default) or ddpm")
    p.add_argument("--steps", type=int, default=50, help="reverse steps, 1..T of the trained model (default 50)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM η: 0 deterministic, 1 = DDPM's variance")
    p.add_argument("--guidance", type=float, default=None,
                   help=f"classifier-free guidance scale w (conditional models; default {DEFAULT_GUIDANCE})")
    p.add_argument("--label", default=None, help="class index or name (default: all classes in turn)")
    p.add_argument("--prompt", default=None, help='text-to-image runs: e.g. "a red circle" (default: all captions in turn)')
    p.add_argument("--negative", default=None, help='text-to-image runs: a negative prompt, e.g. "a red shape"')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(func=run_generate)


@dataclass
class Conditioning:
    labels: object | None          # (n,) class indices, or None for an unconditional model
    scale: float
    describe: str


def class_names(data: str) -> list[str]:
    if data == "fashion":
        from deepatlas.data.fashion_mnist import CLASS_NAMES
        return [c.lower() for c in CLASS_NAMES]
    return [str(i) for i in range(10)]


def parse_label(label: str, names: list[str]) -> int:
    text = label.strip().lower()
    if text.lstrip("-").isdigit():
        value = int(text)
        if 0 <= value < len(names):
            return value
    elif text in names:
        return names.index(text)
    raise ValueError(f"unknown label {label!r}; valid: 0..{len(names) - 1} or one of {', '.join(names)}")


def conditioning(setup, n: int, label: str | None, guidance: float | None) -> Conditioning:
    """What the model is conditioned on; ValueError for options the model cannot use."""
    import torch

    if not setup.conditional:
        if label is not None or guidance is not None:
            raise ValueError("this model is unconditional: --label and --guidance do not apply")
        return Conditioning(None, 1.0, "unconditional")
    scale = DEFAULT_GUIDANCE if guidance is None else guidance
    if scale < 0:
        raise ValueError(f"--guidance {scale}; valid: ≥ 0 (0 unconditional, 1 conditional, > 1 guided)")
    names = class_names(setup.data)
    if label is None:
        return Conditioning(torch.arange(n) % len(names), scale, f"all classes, w = {scale:g}")
    idx = parse_label(label, names)
    return Conditioning(torch.full((n,), idx, dtype=torch.long), scale, f"'{names[idx]}', w = {scale:g}")


def generate_from_text(run_dir: Path, n: int, sampler: str, steps: int, guidance: float | None, prompt: str | None,
                       negative: str | None, seed: int, eta: float):
    """A G9 text-to-image run: (images (n, 3, S, S) in [-1, 1], description)."""
    from deepatlas.diffusion.latent import PAIRS, full_caption, generate, load_text_to_image

    model, schedule, setup, _ = load_text_to_image(Path(run_dir))
    if not 1 <= steps <= setup.T:
        raise ValueError(f"--steps {steps}; valid: 1..{setup.T} (the model was trained with T = {setup.T})")
    scale = DEFAULT_GUIDANCE if guidance is None else guidance
    prompts = [prompt] * n if prompt is not None else [full_caption(c, s) for c, s in PAIRS] * (n // len(PAIRS) + 1)
    x = generate(model, schedule, prompts[:n], negative or "", scale, steps, seed, sampler=sampler, eta=eta)
    what = f"'{prompt}'" if prompt is not None else "all colour–shape captions"
    return x, f"{n} images, {sampler}-{steps}, {what}{f', negative {negative!r}' if negative else ''}, w = {scale:g}"


def generate_images(run_dir: Path, n: int = 64, sampler: str = "ddim", steps: int = 50, guidance: float | None = None,
                    label: str | None = None, seed: int = 0, eta: float = 0.0, prompt: str | None = None,
                    negative: str | None = None):
    """(images (n, C, S, S) in [-1, 1], description); raises ValueError / FileNotFoundError on bad input."""
    import torch

    from deepatlas.diffusion.fashion import generate
    from deepatlas.diffusion.latent import WORDS, is_text_run
    from deepatlas.diffusion.store import NoDiffusionModel, load_diffusion

    if n <= 0:
        raise ValueError(f"--n {n}; valid: ≥ 1")
    if sampler not in SAMPLERS:
        raise ValueError(f"--sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if eta < 0:
        raise ValueError(f"--eta {eta}; valid: ≥ 0")
    if is_text_run(Path(run_dir)):
        if label is not None:
            raise ValueError(f"this model is text-conditioned: use --prompt (e.g. \"a red circle\"; words: "
                             f"{', '.join(WORDS)}), not --label")
        return generate_from_text(Path(run_dir), n, sampler, steps, guidance, prompt, negative, seed, eta)
    try:
        model, schedule, setup, _ = load_diffusion(Path(run_dir))
    except NoDiffusionModel as err:
        raise NoDiffusionModel(f"{err}, or of `deepatlas run latent-diffusion` (text2image.json + text2image.pt)"
                               ) from None
    if prompt is not None or negative is not None:
        kind = "class-conditional: use --label" if setup.conditional else "unconditional: give no --prompt"
        raise ValueError(f"--prompt and --negative need a text-to-image run (G9 latent-diffusion, text2image.json); "
                         f"this model is {kind}")
    if not 1 <= steps <= setup.T:
        raise ValueError(f"--steps {steps}; valid: 1..{setup.T} (the model was trained with T = {setup.T})")
    cond = conditioning(setup, n, label, guidance)
    torch.manual_seed(seed)
    x = generate(model, schedule, setup, n, sampler, steps, seed=seed, labels=cond.labels, scale=cond.scale, eta=eta,
                 clipped_eps=True)          # ε̂ from the clipped x̂_0: see diffusion/samplers.ddim_step
    return x, f"{n} images, {sampler}-{steps}, {cond.describe}"


def run_generate(args: argparse.Namespace) -> int:
    from deepatlas.diffusion.latent import NoTextModel
    from deepatlas.diffusion.store import NoDiffusionModel

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        print(f"deepatlas: --out {out} must be a .png file", file=sys.stderr)
        return 2
    try:
        x, what = generate_images(Path(args.run_dir), args.n, args.sampler, args.steps, args.guidance, args.label,
                                  args.seed, args.eta, args.prompt, args.negative)
    except (NoDiffusionModel, NoTextModel, ValueError) as err:
        print(f"deepatlas: {err}", file=sys.stderr)
        return 2
    import math

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepatlas.data.images import image_grid

    out.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(x, max(1, math.isqrt(len(x) - 1) + 1)).numpy()    # (H, W) grey or (H, W, 3) colour
    plt.imsave(out, grid, cmap="gray", vmin=0, vmax=1)
    print(f"wrote {out}: {what}")
    return 0
