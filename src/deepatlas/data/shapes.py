"""Generated shape scenes: several coloured shapes per image, with boxes, classes and masks.

The detection (V4) and segmentation (V5) places, and any later captioning or question-answering
place, train on these. Each scene is a small RGB image (32–64 px) on a noisy, textured
background with 1…max_objects shapes — circle, square, triangle, star — in one of six colours
and three sizes, allowed to overlap (later shapes occlude earlier ones, and a shape hidden below
`min_visible` of its area is re-drawn elsewhere). Every scene is a pure function of
(seed, split, index), so the splits are fixed and disjoint.

    data = shapes_dataset("train", n=512, size=48)
    data.images          # (N, 3, H, W) float32 in [0, 1]
    data.semantic        # (N, H, W) int64: 0 background, 1 + SHAPES.index(shape) elsewhere
    scene = data[0]      # Scene: image, boxes (n, 4) xyxy pixels, labels (n,), masks (n, H, W), objects
    scene.objects[0]     # ShapeObject(shape='star', colour='red', size='large', position='top left', ...)
    caption(scene)       # "a large red star at the top left and a small blue circle at the bottom right"
    questions(scene)     # [("how many stars are there?", "1"), ("what colour is the star?", "red"), ...]

Boxes are tight around an object's *visible* pixels, in (x0, y0, x1, y1) pixel-edge coordinates:
a mask covering columns 3..7 has x0 = 3, x1 = 8 (the COCO convention, width = x1 − x0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")   # class id = 1 + index; 0 = background
CLASSES: tuple[str, ...] = ("background",) + SHAPES
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.15, 0.15), "green": (0.15, 0.75, 0.20), "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.85, 0.15), "magenta": (0.85, 0.20, 0.80), "cyan": (0.15, 0.80, 0.85),
}
# radius (centre to the farthest point) as a fraction of the image side, per size word
SIZES: dict[str, tuple[float, float]] = {"small": (0.08, 0.11), "medium": (0.12, 0.16), "large": (0.17, 0.22)}
SPLITS: dict[str, tuple[int, int]] = {"train": (0, 2000), "val": (1, 200), "test": (2, 200)}   # (id, default n)
ROWS, COLS = ("top", "middle", "bottom"), ("left", "centre", "right")


@dataclass(frozen=True)
class ShapeObject:
    """One drawn shape: its attributes (for captions and questions) and where it ended up."""
    shape: str                          # one of SHAPES
    colour: str                         # one of COLOURS
    size: str                           # one of SIZES
    radius: float                       # pixels, centre to the farthest point of the shape
    center: tuple[float, float]         # (x, y) pixels
    angle: float                        # rotation in degrees (0 unless the data set rotates)
    box: tuple[int, int, int, int]      # visible pixels' (x0, y0, x1, y1), x1/y1 exclusive
    area: int                           # visible pixels
    position: str                       # "top left", "middle centre", ... (the 3×3 cell of the centre)

    @property
    def label(self) -> int:
        return 1 + SHAPES.index(self.shape)


@dataclass
class Scene:
    image: Tensor                       # (3, H, W) float32 in [0, 1]
    boxes: Tensor                       # (n, 4) float32 xyxy pixels
    labels: Tensor                      # (n,) int64 in 1..len(SHAPES)
    masks: Tensor                       # (n, H, W) bool, visible part of each object
    semantic: Tensor                    # (H, W) int64, 0 = background
    objects: list[ShapeObject] = field(default_factory=list)


@dataclass
class ShapesData:
    """One split: stacked images and semantic masks, per-scene boxes/labels/masks/objects."""
    images: Tensor                      # (N, 3, H, W)
    semantic: Tensor                    # (N, H, W) int64
    boxes: list[Tensor]                 # N × (n_i, 4)
    labels: list[Tensor]                # N × (n_i,)
    masks: list[Tensor]                 # N × (n_i, H, W) bool
    objects: list[list[ShapeObject]]
    split: str = "train"

    def __len__(self) -> int:
        return self.images.size(0)

    def __getitem__(self, i: int) -> Scene:
        if not -len(self) <= i < len(self):
            raise IndexError(f"scene {i} out of range: the {self.split} split has {len(self)} scenes (0..{len(self) - 1})")
        return Scene(self.images[i], self.boxes[i], self.labels[i], self.masks[i], self.semantic[i], self.objects[i])

    @property
    def num_classes(self) -> int:
        """Semantic classes including the background."""
        return len(CLASSES)

    def targets(self, indices: list[int] | Tensor | None = None) -> list[dict[str, Tensor]]:
        """Detection targets [{"boxes": (n, 4), "labels": (n,)}] for the given scenes (all by default)."""
        idx = range(len(self)) if indices is None else [int(i) for i in indices]
        return [{"boxes": self.boxes[i], "labels": self.labels[i]} for i in idx]


# ---------------------------------------------------------------- drawing

def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices (k, 2) of a square, an upward triangle or a five-pointed star of circumradius r."""
    if kind == "square":
        t = np.deg2rad(45.0 + angle) + np.arange(4) * np.pi / 2
        radii = np.full(4, r)
    elif kind == "triangle":
        t = np.deg2rad(-90.0 + angle) + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, r)
    elif kind == "star":   # 10 vertices alternating outer radius r and inner radius 0.45 r
        t = np.deg2rad(-90.0 + angle) + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    else:
        raise ValueError(f"polygon kind {kind!r}; valid: square, triangle, star")
    return np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], axis=1)


def _inside_polygon(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Even–odd rule: a point is inside when a ray to +x crosses the boundary an odd number of times."""
    inside = np.zeros(px.shape, dtype=bool)
    x0, y0 = verts[:, 0], verts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for a, b, c, d in zip(x0, y0, x1, y1):
        crosses = (b > py) != (d > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = a + (py - b) * (c - a) / (d - b)
        inside ^= crosses & (px < x_at)
    return inside


def shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float = 0.0) -> np.ndarray:
    """(size, size) bool: the pixels whose centres lie inside the shape."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5     # pixel centres
    if kind == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    if kind == "square":    # side r·√2: the circumradius is r
        if angle == 0.0:
            h = r / np.sqrt(2.0)
            return (np.abs(xs - cx) <= h) & (np.abs(ys - cy) <= h)
    return _inside_polygon(xs, ys, _polygon(kind, cx, cy, r, angle))


def _background(rng: np.random.Generator, size: int, noise: float) -> np.ndarray:
    """(size, size, 3): a dull base colour, smooth blotches (bilinear-upsampled coarse noise),
    faint stripes, and per-pixel noise — texture the detector must learn to ignore."""
    base = rng.uniform(0.25, 0.6) + rng.uniform(-0.08, 0.08, 3)         # low saturation
    coarse = rng.normal(0.0, 0.08, (5, 5, 3))
    grid = np.linspace(0, 4, size)
    i0 = np.clip(np.floor(grid).astype(int), 0, 3)
    f = (grid - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]            # (size, 5, 3)
    blotch = rows[:, i0] * (1 - f.T[..., None]) + rows[:, i0 + 1] * f.T[..., None]    # (size, size, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    freq, theta = rng.uniform(0.3, 1.2), rng.uniform(0, np.pi)
    stripes = 0.04 * np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)))[..., None]
    return base + blotch + stripes + rng.normal(0.0, noise, (size, size, 3))


def _position(cx: float, cy: float, size: int) -> str:
    return f"{ROWS[min(2, int(3 * cy / size))]} {COLS[min(2, int(3 * cx / size))]}"


def make_scene(rng: np.random.Generator, size: int = 48, max_objects: int = 4, min_objects: int = 1,
               noise: float = 0.05, rotate: bool = False, min_visible: float = 0.5) -> Scene:
    """Draw one scene from `rng`: objects in order (later ones on top), each kept only if it and
    every object below keep ≥ min_visible of their own pixels; 20 tries per object."""
    if not 16 <= size <= 256:
        raise ValueError(f"image size {size}; valid: 16..256 pixels")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"objects per scene {min_objects}..{max_objects}; need 1 ≤ min_objects ≤ max_objects")
    image = _background(rng, size, noise)                         # (H, W, 3)
    owner = np.zeros((size, size), dtype=np.int64)                # 0 = background, k = k-th kept object
    full_area: list[int] = []
    drawn: list[tuple[str, str, str, float, float, float, float]] = []
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        for _try in range(20):
            kind = SHAPES[int(rng.integers(len(SHAPES)))]
            colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
            word = list(SIZES)[int(rng.integers(len(SIZES)))]
            r = rng.uniform(*SIZES[word]) * size
            cx, cy = rng.uniform(r * 0.8, size - r * 0.8, 2)     # may touch the edge a little
            angle = float(rng.uniform(0, 360)) if rotate and kind != "circle" else 0.0
            m = shape_mask(kind, size, cx, cy, r, angle)
            area = int(m.sum())
            if area < 6:
                continue
            trial = np.where(m, len(drawn) + 1, owner)
            counts = np.bincount(trial.ravel(), minlength=len(drawn) + 2)[1:]
            if all(counts[k] >= min_visible * full_area[k] for k in range(len(drawn))):
                owner = trial
                full_area.append(area)
                drawn.append((kind, colour, word, r, cx, cy, angle))
                shade = np.asarray(COLOURS[colour]) * rng.uniform(0.85, 1.1)
                image[m] = shade + rng.normal(0.0, noise, (area, 3))
                break
    image = np.clip(image, 0.0, 1.0)
    masks = np.stack([owner == k + 1 for k in range(len(drawn))]) if drawn else np.zeros((0, size, size), bool)
    objects, boxes = [], []
    for k, (kind, colour, word, r, cx, cy, angle) in enumerate(drawn):
        ys, xs = np.nonzero(masks[k])
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        boxes.append(box)
        objects.append(ShapeObject(kind, colour, word, float(r), (float(cx), float(cy)), angle, box,
                                   int(masks[k].sum()), _position(cx, cy, size)))
    labels = torch.tensor([o.label for o in objects], dtype=torch.int64)
    semantic = np.zeros((size, size), dtype=np.int64)
    for k, o in enumerate(objects):
        semantic[masks[k]] = o.label
    return Scene(torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32)).contiguous(),
                 torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), labels,
                 torch.from_numpy(masks), torch.from_numpy(semantic), objects)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of scene `index` of `split`: independent streams per (seed, split, index)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}; valid: {', '.join(SPLITS)}")
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split][0], index]))


BACKGROUNDS = ("textured", "plain")
PLAIN_GREY = 0.5                     # the plain background's value in every channel


@lru_cache(maxsize=16)
def _dataset(split: str, n: int, size: int, seed: int, max_objects: int, min_objects: int, noise: float,
             rotate: bool, background: str) -> ShapesData:
    scenes = [make_scene(scene_rng(seed, split, i), size, max_objects, min_objects, noise, rotate) for i in range(n)]
    images, semantic = torch.stack([s.image for s in scenes]), torch.stack([s.semantic for s in scenes])
    if background == "plain":            # painted over after drawing: the same objects as the textured scenes
        images = torch.where(semantic.unsqueeze(1) == 0, torch.tensor(PLAIN_GREY), images)
    return ShapesData(images, semantic, [s.boxes for s in scenes], [s.labels for s in scenes],
                      [s.masks for s in scenes], [s.objects for s in scenes], split)


def shapes_dataset(split: str = "train", n: int | None = None, size: int = 48, seed: int = 0,
                   max_objects: int = 4, min_objects: int = 1, noise: float = 0.05,
                   rotate: bool = False, background: str = "textured") -> ShapesData:
    """The first n scenes of a split (default n: train 2000, val 200, test 200); cached per settings.

    The same (seed, split, index) always gives the same scene, whatever n is. background "plain"
    paints every background pixel PLAIN_GREY (the objects, boxes and masks stay the same)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}; valid: {', '.join(SPLITS)}")
    if background not in BACKGROUNDS:
        raise ValueError(f"background {background!r}; valid: {', '.join(BACKGROUNDS)}")
    n = SPLITS[split][1] if n is None else n
    if n < 1:
        raise ValueError(f"number of scenes {n}; must be ≥ 1")
    return _dataset(split, int(n), int(size), int(seed), int(max_objects), int(min_objects), float(noise), bool(rotate),
                    background)


# ---------------------------------------------------------------- language about a scene

def describe(obj: ShapeObject) -> str:
    """'a large red star at the top left' ('the centre' for the middle cell)."""
    where = "the centre" if obj.position == "middle centre" else f"the {obj.position}"
    return f"a {obj.size} {obj.colour} {obj.shape} at {where}"


def caption(scene: Scene | list[ShapeObject]) -> str:
    """All objects, bottom to top: 'a small red circle at the centre and a large blue square at ...'."""
    objs = scene.objects if isinstance(scene, Scene) else scene
    parts = [describe(o) for o in objs]
    if not parts:
        return "an empty scene"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _plural(shape: str) -> str:
    return shape + "s"


def questions(scene: Scene | list[ShapeObject]) -> list[tuple[str, str]]:
    """Question–answer pairs whose answers follow from the objects' attributes:
    a count per shape (including 0), the colour and size of each shape that occurs once, and a
    yes/no for every (colour, shape) seen plus one combination that is absent."""
    objs = scene.objects if isinstance(scene, Scene) else scene
    qa = [(f"how many {_plural(s)} are there?", str(sum(o.shape == s for o in objs))) for s in SHAPES]
    for s in SHAPES:
        found = [o for o in objs if o.shape == s]
        if len(found) == 1:
            qa.append((f"what colour is the {s}?", found[0].colour))
            qa.append((f"what size is the {s}?", found[0].size))
            qa.append((f"where is the {s}?", found[0].position))
    seen = {(o.colour, o.shape) for o in objs}
    qa += [(f"is there a {c} {s}?", "yes") for c, s in sorted(seen)]
    absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in seen]
    if absent:
        c, s = absent[(len(objs) * 7) % len(absent)]          # deterministic pick
        qa.append((f"is there a {c} {s}?", "no"))
    return qa
