"""M1: a tiny CLIP trained on captioned shape scenes — zero-shot classification from text prompts,
retrieval, and colour–shape pairs never seen together in training.

Built: models/clip.py (our ViT + ln_pre as the image tower, a causal text Transformer pooled at
EOT, projections, learned temperature, symmetric InfoNCE; equal to HF CLIPModel).

Data: one-object scenes from data/shapes.py (32 px, noisy textured background). Each training
image is paired, afresh every step, with one of several caption templates about its object
(the full `describe()` sentence, "a red star", "a large star", "a star at the top left", ...);
half of each batch is mirrored left–right, its caption's "left"/"right" swapped.
Four colour–shape pairs (HELD_OUT) never occur in training: scenes showing them are dropped.

Measured on 1200 test scenes (all 24 pairs, these four included; about 190 show one of the four):
  * zero-shot shape (4-way) and colour (6-way) accuracy from text prompts alone, one template vs
    the ensemble (mean of the normalised prompt embeddings, Radford et al. §3.1.4), against a
    logistic-regression linear probe on the same image features (the tower's CLS output);
  * image→text and text→image recall@1/5/10 among the test images' full captions (a hit is the
    same caption text: identical captions are equally right);
  * the 24-way colour–shape pair accuracy from prompts "a {colour} {shape}", separately on test
    images of the held-out pairs (compositional generalisation) and of seen pairs; and, for
    comparison, the pair read off attribute by attribute (colour prompts and shape prompts apart).
Held when zero-shot shape and colour accuracy (ensemble) are both at least 3 binomial standard
errors above chance (p < 0.002 on n_test images), image→text recall@5 ≥ 5× chance, and the
held-out-pair accuracy ≥ 2× chance (1/24).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.data.shapes import COLOURS, COLS, ROWS, SHAPES, SIZES, ShapeObject, describe, shapes_dataset
from deepatlas.models.clip import CLIP, clip_loss

HELD_OUT: tuple[tuple[str, str], ...] = (("red", "triangle"), ("blue", "star"), ("green", "circle"),
                                         ("yellow", "square"))
SPECIAL = ("<sot>", "<eot>", "<pad>")
WORDS = sorted({"a", "at", "the", "shape", "centre", *SHAPES, *COLOURS, *SIZES, *ROWS, *COLS})
VOCAB = {w: i for i, w in enumerate(SPECIAL + tuple(WORDS))}
SOT, EOT, PAD = 0, 1, 2
CONTEXT = 12


@dataclass
class Config:
    steps: int = 1500
    batch: int = 128
    n_train: int = 2000
    # 1200 test scenes: ~190 show a held-out pair (400 gave 60, where chance's SE, 2.6 points, was a third of the bar)
    n_test: int = 1200
    image_size: int = 32
    patch: int = 4
    dim: int = 32
    depth: int = 2
    lr: float = 2e-3
    seed: int = 0


def tokenize(texts: list[str]) -> torch.Tensor:
    """Word-level ids (N, CONTEXT): <sot> words <eot> <pad>…; unknown words name what is valid."""
    out = torch.full((len(texts), CONTEXT), PAD, dtype=torch.long)
    for i, text in enumerate(texts):
        words = text.split()
        if len(words) + 2 > CONTEXT:
            raise ValueError(f"caption {text!r} has {len(words)} words; at most {CONTEXT - 2} fit")
        bad = [w for w in words if w not in VOCAB]
        if bad:
            raise ValueError(f"words {bad} of {text!r} are not in the vocabulary: {', '.join(WORDS)}")
        out[i, :len(words) + 2] = torch.tensor([SOT] + [VOCAB[w] for w in words] + [EOT])
    return out


def templates(o: ShapeObject) -> list[str]:
    """Training captions of one object: the full sentence and partial descriptions."""
    where = "the centre" if o.position == "middle centre" else f"the {o.position}"
    return [describe(o), f"a {o.colour} {o.shape}", f"a {o.size} {o.colour} {o.shape}", f"a {o.shape} at {where}",
            f"a {o.size} {o.shape}", f"a {o.colour} shape", f"a {o.colour} {o.shape} at {where}"]


def mirrored(text: str) -> str:
    """The caption of the left–right mirrored image (every shape here is mirror-symmetric)."""
    return " ".join({"left": "right", "right": "left"}.get(w, w) for w in text.split())


def _data(split: str, n: int, size: int, seed: int, drop_held: bool):
    d = shapes_dataset(split, n, size=size, seed=seed, max_objects=1, min_objects=1)
    objs = [o[0] for o in d.objects]
    keep = [i for i, o in enumerate(objs) if not (drop_held and (o.colour, o.shape) in HELD_OUT)]
    return d.images[keep], [objs[i] for i in keep]


@torch.no_grad()
def _classes(model: CLIP, prompts: list[list[str]]) -> torch.Tensor:
    """Ensembled class embeddings (K, d_e): mean of each class's normalised prompt embeddings, renormalised."""
    embs = [model.encode_text(tokenize(p)).mean(0) for p in prompts]
    return torch.nn.functional.normalize(torch.stack(embs), dim=-1)


def _zero_shot(model: CLIP, img: torch.Tensor, labels: np.ndarray, prompts: list[list[str]]
               ) -> tuple[float, float, np.ndarray]:
    """(ensemble accuracy, mean single-template accuracy, ensemble predictions) of argmax cosine over class prompts."""
    pred = (img @ _classes(model, prompts).t()).argmax(1).numpy()
    ens = float((pred == labels).mean())
    singles = [float(((img @ _classes(model, [[p[t]] for p in prompts]).t()).argmax(1).numpy() == labels).mean())
               for t in range(len(prompts[0]))]
    return ens, float(np.mean(singles)), pred


def _probe(tr: np.ndarray, ytr: np.ndarray, te: np.ndarray, yte: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    mu, sd = tr.mean(0), tr.std(0) + 1e-6
    clf = LogisticRegression(max_iter=2000, C=1.0).fit((tr - mu) / sd, ytr)
    return float(clf.score((te - mu) / sd, yte))


def _recall(sim: torch.Tensor, same: torch.Tensor, ks: tuple[int, ...]) -> dict[int, float]:
    """sim (Q, N) query-to-candidate scores, same (Q, N) True where the candidate is right -> recall@k."""
    order = sim.argsort(dim=1, descending=True)
    hits = same.gather(1, order)
    return {k: float(hits[:, :k].any(1).float().mean()) for k in ks}


@experiment("M1", "clip-shapes",
            claim="a tiny CLIP trained on captioned shape scenes classifies shape and colour zero-shot from text "
                  "prompts well above chance (prompt ensembling vs one template, against a linear probe on the same "
                  "features), retrieves captions ↔ images, and names colour–shape pairs never seen in training",
            config=Config, one_thread=True,
            quick={"steps": 300, "n_train": 600, "batch": 64, "n_test": 400},
            headline={"zs_shape_acc": ("zero-shot shape accuracy (chance 25%)", "{:.1%}"),
                      "probe_shape_acc": ("linear-probe shape accuracy", "{:.1%}"),
                      "zs_colour_acc": ("zero-shot colour accuracy (chance 17%)", "{:.1%}"),
                      "i2t_recall_at_5": ("image→text recall@5", "{:.1%}"),
                      "pair_acc_held_out": ("unseen colour–shape pairs, 24-way", "{:.1%}")})
def clip_shapes(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    x_tr, o_tr = _data("train", cfg.n_train, cfg.image_size, cfg.seed, drop_held=True)
    x_te, o_te = _data("test", cfg.n_test, cfg.image_size, cfg.seed, drop_held=False)
    assert not any((o.colour, o.shape) in HELD_OUT for o in o_tr)
    caps_tr = [templates(o) for o in o_tr]
    run.print(f"{len(o_tr)} training scenes (held-out pairs dropped), {len(o_te)} test scenes")

    model = CLIP(len(VOCAB), EOT, embed_dim=cfg.dim, image_size=cfg.image_size, patch_size=cfg.patch,
                 image_dim=cfg.dim, image_depth=cfg.depth, image_heads=4, image_mlp=2 * cfg.dim, context=CONTEXT,
                 text_dim=cfg.dim, text_depth=cfg.depth, text_heads=4, text_mlp=2 * cfg.dim)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.98))
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / cfg.steps))))
    t0, losses = time.perf_counter(), []
    for step in range(cfg.steps):
        idx = rng.sample(range(len(o_tr)), min(cfg.batch, len(o_tr)))
        flip = torch.tensor([rng.random() < 0.5 for _ in idx])        # augmentation: mirror half the batch
        texts = [rng.choice(caps_tr[i]) for i in idx]
        ids = tokenize([mirrored(t) if f else t for t, f in zip(texts, flip.tolist())])
        images = torch.where(flip[:, None, None, None], x_tr[idx].flip(-1), x_tr[idx])
        per_image, _ = model(images, ids)
        loss = clip_loss(per_image)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100.0))       # the paper clips exp(τ) at 100
        losses.append(loss.item())
        if step % max(1, cfg.steps // 20) == 0 or step == cfg.steps - 1:
            run.log(step=step, loss=losses[-1], logit_scale=float(model.logit_scale.exp()))
    train_s = time.perf_counter() - t0
    run.print(f"trained {cfg.steps} steps in {train_s:.1f} s, final loss {np.mean(losses[-20:]):.3f}, "
              f"exp(τ) = {float(model.logit_scale.exp()):.1f}")

    model.eval()
    with torch.no_grad():
        f_tr, f_te = model.image_encoder(x_tr), model.image_encoder(x_te)     # tower features (N, D)
        img = model.encode_image(x_te)                                         # (N, d_e)
    y_shape = np.array([SHAPES.index(o.shape) for o in o_te])
    y_colour = np.array([list(COLOURS).index(o.colour) for o in o_te])
    shape_prompts = [[f"a {z} {s}" for z in SIZES] + [f"a {c} {s}" for c in COLOURS] for s in SHAPES]
    colour_prompts = [[f"a {c} shape"] + [f"a {c} {s}" for s in SHAPES] for c in COLOURS]
    zs_shape, zs_shape_1, pred_shape = _zero_shot(model, img, y_shape, shape_prompts)
    zs_colour, zs_colour_1, pred_colour = _zero_shot(model, img, y_colour, colour_prompts)
    ytr_shape = np.array([SHAPES.index(o.shape) for o in o_tr])
    ytr_colour = np.array([list(COLOURS).index(o.colour) for o in o_tr])
    probe_shape = _probe(f_tr.numpy(), ytr_shape, f_te.numpy(), y_shape)
    probe_colour = _probe(f_tr.numpy(), ytr_colour, f_te.numpy(), y_colour)

    # retrieval among the test images' full captions
    caps = [describe(o) for o in o_te]
    with torch.no_grad():
        txt = model.encode_text(tokenize(caps))
    same = torch.tensor([[a == b for b in caps] for a in caps])
    ks = (1, 5, 10)
    i2t, t2i = _recall(img @ txt.t(), same, ks), _recall(txt @ img.t(), same, ks)

    # colour–shape pairs, 24-way, on images of held-out vs seen pairs
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    pair_emb = _classes(model, [[f"a {c} {s}"] + [f"a {z} {c} {s}" for z in SIZES] for c, s in pairs])
    pred = (img @ pair_emb.t()).argmax(1).numpy()
    truth = np.array([pairs.index((o.colour, o.shape)) for o in o_te])
    held_mask = np.array([(o.colour, o.shape) in HELD_OUT for o in o_te])
    pair_held = float((pred[held_mask] == truth[held_mask]).mean()) if held_mask.any() else float("nan")
    pair_seen = float((pred[~held_mask] == truth[~held_mask]).mean())
    # on held-out images: how often is the shape right, the colour right, ignoring the pair
    ps = np.array([pairs[p][1] for p in pred])
    pc = np.array([pairs[p][0] for p in pred])
    held_shape_ok = float(np.mean([ps[i] == o_te[i].shape for i in np.flatnonzero(held_mask)]))
    held_colour_ok = float(np.mean([pc[i] == o_te[i].colour for i in np.flatnonzero(held_mask)]))
    # the same held-out images scored by attribute: colour and shape prompts separately, then combined
    both = (pred_shape == y_shape) & (pred_colour == y_colour)
    factored_held, factored_seen = float(both[held_mask].mean()), float(both[~held_mask].mean())
    zs_shape_held = float((pred_shape == y_shape)[held_mask].mean())

    n = len(o_te)
    def above_chance(acc: float, k: int) -> bool:   # ≥ 3 binomial standard errors above chance 1/k (p < 0.002)
        return acc >= 1 / k + 3 * np.sqrt((1 / k) * (1 - 1 / k) / n)

    checks = {"zero_shot_shape": above_chance(zs_shape, len(SHAPES)),
              "zero_shot_colour": above_chance(zs_colour, len(COLOURS)),
              "retrieval": i2t[5] >= 5 * 5 / n, "held_out_pairs": pair_held >= 2 / len(pairs)}
    metrics = {
        "zs_shape_acc": zs_shape, "zs_shape_acc_one_template": zs_shape_1, "probe_shape_acc": probe_shape,
        "zs_colour_acc": zs_colour, "zs_colour_acc_one_template": zs_colour_1, "probe_colour_acc": probe_colour,
        **{f"i2t_recall_at_{k}": v for k, v in i2t.items()}, **{f"t2i_recall_at_{k}": v for k, v in t2i.items()},
        "retrieval_chance_at_5": 5 / n,
        "pair_acc_held_out": pair_held, "pair_acc_seen": pair_seen, "pair_chance": 1 / len(pairs),
        "held_out_shape_right": held_shape_ok, "held_out_colour_right": held_colour_ok,
        "pair_acc_factored_held_out": factored_held, "pair_acc_factored_seen": factored_seen,
        "zs_shape_acc_held_out_images": zs_shape_held,
        "n_held_out_test_images": int(held_mask.sum()), "n_train": len(o_tr), "n_test": n,
        "final_loss": float(np.mean(losses[-20:])), "logit_scale": float(model.logit_scale.exp()),
        "train_seconds": train_s, "checks": checks,
    }
    for key, v in metrics.items():
        if isinstance(v, float):
            run.print(f"  {key:28s} {v:.3f}")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.plot(losses, lw=0.8)
    a1.set(xlabel="step", ylabel="symmetric InfoNCE", title="training loss")
    names = ["shape", "colour"]
    w = 0.25
    for j, (lab, vals) in enumerate([("one template", [zs_shape_1, zs_colour_1]), ("ensemble", [zs_shape, zs_colour]),
                                     ("linear probe", [probe_shape, probe_colour])]):
        a2.bar(np.arange(2) + (j - 1) * w, vals, w, label=lab)
    a2.plot([-0.4, 0.4], [1 / len(SHAPES)] * 2, "k--", lw=1)
    a2.plot([0.6, 1.4], [1 / len(COLOURS)] * 2, "k--", lw=1, label="chance")
    a2.set(xticks=range(2), xticklabels=names, ylim=(0, 1), ylabel="test accuracy", title="zero-shot vs probe")
    a2.legend(fontsize=8)
    fig.tight_layout()
    run.savefig(fig, "zero_shot")
    plt.close(fig)

    notes = (f"zero-shot shape {zs_shape:.1%} (one template {zs_shape_1:.1%}, probe {probe_shape:.1%}), colour "
             f"{zs_colour:.1%} (probe {probe_colour:.1%}); i→t R@5 {i2t[5]:.1%}, t→i R@5 {t2i[5]:.1%}; unseen pairs "
             f"{pair_held:.1%} vs seen {pair_seen:.1%} (chance {1 / len(pairs):.1%}), by attribute (colour and shape "
             f"prompts separately) {factored_held:.1%} vs {factored_seen:.1%}; failed: "
             f"{[k for k, ok in checks.items() if not ok] or 'none'}")
    return Verdict(held=all(checks.values()), metrics=metrics, notes=notes)
