"""Visual question answering on the shape scenes with SmolLM2: data, the vision tower's
pre-training, the three designs of models/vlm.py built, trained, scored and saved.

Questions (four kinds, answers one or two words):
    count     "how many objects are there?"              "1" … "3"
    colour    "what colour is the object at the top left?" "red"     (a cell with one object's centre)
    position  "where is the red object?"                 "top left"  (a colour that occurs once; the 3×3 cell of its centre)
    shape     "what shape is the red object?"            "circle"    (a colour that occurs once)
Text: prompt "Question: {q}\\nAnswer:", target " {a}" + <|im_end|>; captions (stage 1):
prompt "Caption:", target " {caption}" + <|im_end|>.

The vision tower (a small ViT, frozen afterwards) is pre-trained to name, for each of the 3×3
cells, the shape and colour of the object centred there (none for an empty cell): supervised
pre-training on the same scenes, as CLIP's tower is pre-trained before LLaVA uses it. Its output is
then standardised per dimension over the training scenes (VisionTower.standardise).
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.core.train import TrainConfig, TrainResult, train
from deepatlas.data.shapes import COLOURS, COLS, ROWS, SHAPES, ShapeObject, caption
from deepatlas.models.vit import ViT, conv_stem
from deepatlas.models.vlm import (FlamingoVLM, LlavaVLM, MLPProjector, PerceiverResampler, TextOnlyLM,
                                  VisionTower, answer_loss, greedy_answers)

KINDS = ("count", "colour", "position", "shape")
DESIGNS = ("text", "llava", "flamingo")
HELD_OUT: tuple[tuple[str, str], ...] = (("red", "triangle"), ("blue", "star"), ("green", "circle"),
                                         ("yellow", "square"))
CONFIG_FILE = "vlm.json"


@dataclass
class VQAConfig:
    image_size: int = 48
    max_objects: int = 3
    stem_layers: int = 2             # 48 px -> a 12×12 feature map
    vit_patch: int = 2               # -> 6×6 ViT tokens
    vit_dim: int = 64
    vit_depth: int = 2
    grid: int = 3                    # pooled image tokens: grid² for LLaVA
    latents: int = 8                 # resampler outputs for Flamingo
    resampler_depth: int = 2
    xattn_every: int = 6             # gated cross-attention before blocks 0, 6, 12, ...
    llm_layers: int = 0              # 0: all of SmolLM2's blocks; k: only the first k (a cheaper LM for quick runs)
    gate_lr_scale: float = 30.0      # Flamingo's tanh gates step at this × the learning rate (from 0, they
                                     # must travel far in a short run; the loop gives one rate to the rest)
    lora_r: int = 8
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    seed: int = 0


@dataclass
class Example:
    scene: int                       # index into its split's images
    kind: str                        # one of KINDS, or "caption"
    question: str
    answer: str


def scene_questions(objs: list[ShapeObject]) -> list[tuple[str, str, str]]:
    """(kind, question, answer) of every question of the four kinds about one scene. Objects are
    referred to by colour or by cell — what a small tower sees best (shapes it names less well:
    M1's linear probe reads a lone shape 43% right) — and the four kinds ask for each attribute."""
    out = [("count", "how many objects are there?", str(len(objs)))]
    cells: dict[str, list[ShapeObject]] = {}
    for o in objs:
        cells.setdefault(o.position, []).append(o)
    for pos, here in cells.items():
        if len(here) == 1:
            where = "the centre" if pos == "middle centre" else f"the {pos}"
            out.append(("colour", f"what colour is the object at {where}?", here[0].colour))
    for c in COLOURS:
        found = [o for o in objs if o.colour == c]
        if len(found) == 1:
            out.append(("position", f"where is the {c} object?", found[0].position))
            out.append(("shape", f"what shape is the {c} object?", found[0].shape))
    return out


def examples(objects: list[list[ShapeObject]], per_kind: int | None, rng: random.Random) -> list[Example]:
    """Questions about each scene: all of them (per_kind None) or up to per_kind of each kind."""
    out = []
    for i, objs in enumerate(objects):
        qs = scene_questions(objs)
        for kind in KINDS:
            mine = [q for q in qs if q[0] == kind]
            if per_kind is not None:
                mine = rng.sample(mine, min(per_kind, len(mine)))
            out += [Example(i, k, q, a) for k, q, a in mine]
    return out


def has_held_out(objs: list[ShapeObject]) -> bool:
    return any((o.colour, o.shape) in HELD_OUT for o in objs)


# ---------------------------------------------------------------- the vision tower

def cell_targets(objs: list[ShapeObject], grid: int = 3) -> tuple[Tensor, Tensor]:
    """(grid², ) shape class (0 none, 1 + SHAPES index) and colour class (0 none, 1 + COLOURS index) of
    the object centred in each cell; the topmost (drawn last) wins a shared cell."""
    if grid != 3:
        raise ValueError(f"cell targets follow the scenes' 3×3 positions; grid {grid} given")
    shape, colour = torch.zeros(9, dtype=torch.long), torch.zeros(9, dtype=torch.long)
    for o in objs:
        r, c = o.position.split()
        cell = ROWS.index(r) * 3 + COLS.index(c)
        shape[cell], colour[cell] = 1 + SHAPES.index(o.shape), 1 + list(COLOURS).index(o.colour)
    return shape, colour


def make_tower(cfg: VQAConfig) -> VisionTower:
    """A hybrid ViT: `stem_layers` stride-2 convs, then ViT patches of vit_patch on the feature map."""
    side, channels = cfg.image_size // 2 ** cfg.stem_layers, cfg.vit_dim
    stem = conv_stem(3, channels, cfg.stem_layers) if cfg.stem_layers else None
    vit = ViT(side, cfg.vit_patch, channels if stem else 3, 1, cfg.vit_dim, cfg.vit_depth, 4, 2 * cfg.vit_dim)
    vit.head = nn.Identity()
    return VisionTower(vit, cfg.grid, stem)


def pretrain_tower(cfg: VQAConfig, images: Tensor, objects: list[list[ShapeObject]], steps: int,
                   batch: int = 64, lr: float = 3e-3, test: tuple[Tensor, list[list[ShapeObject]]] | None = None
                   ) -> tuple[VisionTower, dict]:
    """Train the tower + a per-cell linear head (shape, colour) with cross-entropy; the head is dropped.
    Returns the frozen tower and its numbers (with `test`: the share of occupied test cells whose
    shape and colour are both named right)."""
    tower = make_tower(cfg)
    targets = [cell_targets(o, cfg.grid) for o in objects]
    ys, yc = torch.stack([t[0] for t in targets]), torch.stack([t[1] for t in targets])   # (N, 9)
    head = nn.Linear(tower.dim, 1 + len(SHAPES) + 1 + len(COLOURS))
    both = nn.ModuleDict({"tower": tower, "head": head})

    def loss_fn(m: nn.Module, b) -> Tensor:
        x, s, c = b
        out = m["head"](m["tower"](x))                                          # (B, 9, 5 + 7)
        ls, lc = out[..., :1 + len(SHAPES)], out[..., 1 + len(SHAPES):]
        return F.cross_entropy(ls.flatten(0, 1), s.flatten()) + F.cross_entropy(lc.flatten(0, 1), c.flatten())

    def get_batch(step: int, micro: int):
        i = torch.randint(0, len(ys), (batch,), generator=torch.Generator().manual_seed(cfg.seed * 7919 + step))
        return images[i], ys[i], yc[i]

    res = train(both, loss_fn, get_batch, TrainConfig(steps=steps, lr=lr, warmup=steps // 10, weight_decay=0.01,
                                                      log_every=0, seed=cfg.seed, progress=False))
    tower.eval()
    for p in tower.parameters():
        p.requires_grad_(False)
    info = {"tower_final_loss": sum(res.losses[-10:]) / len(res.losses[-10:]), "tower_seconds": res.seconds}
    if test is not None:
        t = [cell_targets(o, cfg.grid) for o in test[1]]
        ts, tc = torch.stack([x[0] for x in t]), torch.stack([x[1] for x in t])
        with torch.no_grad():
            out = head(tower_features(tower, test[0]))                         # (N, 9, 5 + 7)
        shape_ok, colour_ok = out[..., :1 + len(SHAPES)].argmax(-1) == ts, out[..., 1 + len(SHAPES):].argmax(-1) == tc
        right = shape_ok & colour_ok
        info["tower_cell_accuracy"] = float(right[ts > 0].float().mean())
        info["tower_cell_shape_accuracy"] = float(shape_ok[ts > 0].float().mean())
        info["tower_cell_colour_accuracy"] = float(colour_ok[ts > 0].float().mean())
        info["tower_empty_accuracy"] = float(right[ts == 0].float().mean())
    tower.standardise(images)       # after the head's numbers: the head was trained on the raw features
    return tower, info


@torch.no_grad()
def tower_features(tower: VisionTower, images: Tensor, batch: int = 256) -> Tensor:
    """(N, 3, H, W) -> (N, grid², D): computed once, the tower being frozen."""
    return torch.cat([tower(images[i:i + batch]) for i in range(0, len(images), batch)])


# ---------------------------------------------------------------- text

class Texts:
    """Prompt and target ids for the LLM's tokenizer."""

    def __init__(self, tokenizer, stop_id: int):
        self.tok, self.stop_id = tokenizer, stop_id
        self._cache: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tok.encode(text)
        return self._cache[text]

    def prompt(self, ex: Example) -> list[int]:
        return self.encode("Caption:" if ex.kind == "caption" else f"Question: {ex.question}\nAnswer:")

    def target(self, ex: Example) -> list[int]:
        return self.encode(" " + ex.answer) + [self.stop_id]

    def batch(self, exs: list[Example]) -> tuple[Tensor, Tensor]:
        """Right-padded ids (B, T) and the target mask (B, T): causal attention never sees the padding
        from an earlier position, so no attention mask is needed."""
        rows = [(self.prompt(e), self.target(e)) for e in exs]
        T = max(len(p) + len(t) for p, t in rows)
        ids = torch.full((len(rows), T), self.stop_id, dtype=torch.long)
        mask = torch.zeros(len(rows), T, dtype=torch.bool)
        for i, (p, t) in enumerate(rows):
            ids[i, :len(p) + len(t)] = torch.tensor(p + t)
            mask[i, len(p):len(p) + len(t)] = True
        return ids, mask


def caption_examples(objects: list[list[ShapeObject]]) -> list[Example]:
    return [Example(i, "caption", "", caption(o)) for i, o in enumerate(objects)]


# ---------------------------------------------------------------- the designs

def truncate(llm, layers: int):
    """Keep the first `layers` blocks of the LLM (0: all), in place; the final norm and head stay."""
    if not 0 <= layers <= len(llm.blocks):
        raise ValueError(f"llm_layers {layers}; valid: 0 (all) .. {len(llm.blocks)}")
    if layers:
        llm.blocks = llm.blocks[:layers]
        llm.config.n_layer = layers
    return llm


def build(design: str, cfg: VQAConfig, llm, tower: VisionTower | None) -> TextOnlyLM:
    """The model of `design` around the (frozen) llm, cut to cfg.llm_layers; LoRA is applied by `add_lora`."""
    if design not in DESIGNS:
        raise ValueError(f"design {design!r}; valid: {', '.join(DESIGNS)}")
    truncate(llm, cfg.llm_layers)
    for p in llm.parameters():
        p.requires_grad_(False)
    torch.manual_seed(cfg.seed)
    if design == "text":
        return TextOnlyLM(llm)
    if design == "llava":
        return LlavaVLM(tower, llm, MLPProjector(tower.dim, llm.config.dim))
    model = FlamingoVLM(tower, llm, PerceiverResampler(tower.dim, cfg.latents, cfg.resampler_depth),
                        every=min(cfg.xattn_every, len(llm.blocks)))   # a short LM: block 0 only
    for x in model.xattn:                       # their own rate: core/train's AdamW groups read p.lr_scale
        x.attn_gate.lr_scale = x.ff_gate.lr_scale = cfg.gate_lr_scale
    return model


def add_lora(model: TextOnlyLM, cfg: VQAConfig) -> list[str]:
    from deepatlas.tuning.lora import apply_lora

    torch.manual_seed(cfg.seed + 1)
    return apply_lora(model.llm, cfg.lora_r, 2.0 * cfg.lora_r, targets=list(cfg.lora_targets), freeze=False)


def fit(model: TextOnlyLM, feats: Tensor | None, exs: list[Example], texts: Texts, steps: int, batch: int,
        lr: float, seed: int, bf16: bool = True) -> TrainResult:
    """The shared training loop on the answer tokens of random batches of `exs` (tower frozen:
    feats (N, grid², D) are its precomputed outputs)."""
    for p in getattr(model, "tower", nn.Identity()).parameters():
        p.requires_grad_(False)

    def get_batch(step: int, micro: int):
        rng = random.Random(seed * 100_003 + step)
        chosen = [exs[rng.randrange(len(exs))] for _ in range(batch)]
        ids, mask = texts.batch(chosen)
        x = None if feats is None else feats[[e.scene for e in chosen]]
        return x, ids, mask

    return train(model, lambda m, b: answer_loss(m, *b), get_batch,
                 TrainConfig(steps=steps, lr=lr, warmup=max(1, steps // 10), weight_decay=0.0, log_every=0,
                             seed=seed, progress=False, precision="bf16" if bf16 else "fp32"))


def answer(model: TextOnlyLM, feats: Tensor | None, exs: list[Example], texts: Texts, batch: int = 64,
           max_new: int = 4, bf16: bool = True) -> list[str]:
    """Greedy answers, batched by prompt length (no padding needed)."""
    model.eval()
    by_len: dict[int, list[int]] = {}
    for i, e in enumerate(exs):
        by_len.setdefault(len(texts.prompt(e)), []).append(i)
    out = [""] * len(exs)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for idx in by_len.values():
            for s in range(0, len(idx), batch):
                part = idx[s:s + batch]
                prompts = torch.tensor([texts.prompt(exs[i]) for i in part])
                x = None if feats is None else feats[[exs[i].scene for i in part]]
                for i, ids in zip(part, greedy_answers(model, x, prompts, max_new, texts.stop_id)):
                    out[i] = texts.tok.decode(ids).strip()
    return out


# ---------------------------------------------------------------- saving and loading (for the CLI)

def trainable_state(model: TextOnlyLM) -> dict[str, Tensor]:
    """What the run keeps: everything but the LLM's own weights (tower, projector or resampler and
    cross-attention, LoRA A and B) — SmolLM2 is reloaded from its package."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("llm.") or ".lora_" in k}


def save(run_dir: Path, design: str, model: TextOnlyLM, cfg: VQAConfig, data: dict, bf16: bool) -> None:
    """vlm_<design>.pt (trainable_state) and vlm.json: the config, the test scenes' settings
    (data: n, size, max_objects, seed), the precision, the designs saved so far."""
    torch.save(trainable_state(model), run_dir / f"vlm_{design}.pt")
    meta_path = run_dir / CONFIG_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"designs": []}
    meta.update(config=asdict(cfg), data=data, bf16=bf16)
    meta["designs"] = sorted(set(meta["designs"]) | {design})
    meta_path.write_text(json.dumps(meta, indent=2))


def read_meta(run_dir: Path, design: str) -> dict:
    """vlm.json of an M2 run, checked to hold `design`."""
    meta_path = Path(run_dir) / CONFIG_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {CONFIG_FILE} here; give a run folder of M2 (vlm-shapes)")
    meta = json.loads(meta_path.read_text())
    if design not in meta["designs"]:
        raise ValueError(f"design {design!r}: this run saved {', '.join(meta['designs'])}")
    return meta


def load(run_dir: Path, design: str, llm) -> tuple[TextOnlyLM, dict]:
    """The saved model of `design` around a freshly loaded SmolLM2 `llm`, and the run's metadata."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir, design)
    c = meta["config"]
    cfg = VQAConfig(**{**c, "lora_targets": tuple(c["lora_targets"])})
    state = torch.load(run_dir / f"vlm_{design}.pt", weights_only=True)
    model = build(design, cfg, llm, None if design == "text" else make_tower(cfg))
    if any(".lora_" in k for k in state):
        add_lora(model, cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k.startswith("llm.") and ".lora_" not in k)]
    if missing or unexpected:
        raise ValueError(f"{run_dir / f'vlm_{design}.pt'} does not fit: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return model.eval(), meta
