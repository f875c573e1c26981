"""`deepatlas ask-image RUN_DIR --image N "question" [--design llava|flamingo|text]`.

Answers a question about held-out scene N of an M2 run (vlm-shapes): the scene is regenerated
from the run's saved data settings (scenes are a function of seed, split and index), SmolLM2 is
reloaded from its package, and the run's saved tower, connector and LoRA weights are put around
it. Bad input ends with a one-line error and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("ask-image", help="ask an M2 vision-language model about a held-out shape scene")
    p.add_argument("run_dir", help="a run folder of M2 (vlm-shapes): holds vlm.json")
    p.add_argument("--image", type=int, required=True, help="index of the run's held-out (test) scenes")
    p.add_argument("question", help='e.g. "what colour is the circle?"')
    p.add_argument("--design", default="llava", help="llava (default), flamingo, or text (the image-blind baseline)")
    p.set_defaults(func=run_ask)


def ask(run_dir: Path, image: int, question: str, design: str = "llava") -> tuple[str, str | None]:
    """(the model's answer, the true answer when the question is one of the scene's generated ones).
    Raises ValueError / FileNotFoundError naming the bad input."""
    from deepatlas.data.shapes import shapes_dataset
    from deepatlas.multimodal import vqa

    question = question.strip()
    if not question:
        raise ValueError("the question is empty; ask e.g. \"what colour is the circle?\"")
    if design not in vqa.DESIGNS:
        raise ValueError(f"--design {design!r}; valid: {', '.join(vqa.DESIGNS)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    meta = vqa.read_meta(run_dir, design)
    d = meta["data"]
    if not 0 <= image < d["n"]:
        raise ValueError(f"--image {image} out of range: the run has {d['n']} held-out scenes (0..{d['n'] - 1})")
    from deepatlas.chat.session import ChatModel
    from deepatlas.quant.weights import require_smollm2

    chat = ChatModel.load(require_smollm2())
    model, _ = vqa.load(run_dir, design, chat.model)
    scene = shapes_dataset("test", d["n"], size=d["size"], seed=d["seed"], max_objects=d["max_objects"])[image]
    texts = vqa.Texts(chat.tokenizer, chat.stop_ids[0])
    ex = vqa.Example(0, "question", question, "")
    feats = None if design == "text" else vqa.tower_features(model.tower, scene.image[None])
    got = vqa.answer(model, feats, [ex], texts, bf16=meta.get("bf16", True))[0]
    truth = {q: a for _, q, a in vqa.scene_questions(scene.objects)}.get(question)
    return got, truth


def run_ask(args: argparse.Namespace) -> int:
    try:
        got, truth = ask(Path(args.run_dir), args.image, args.question, args.design)
    except (ValueError, FileNotFoundError) as err:
        print(f"deepatlas ask-image: {err}", file=sys.stderr)
        return 2
    print(got if truth is None else f"{got}    (truth: {truth})")
    return 0
