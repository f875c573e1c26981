"""Image classification on Fashion-MNIST with the shared trainer (used by A1, V1, V2, V3, V6).

    data = load_images(train_size=6000, seed=0)
    result = train_classifier(model, data, ClassifyConfig(epochs=3), run=run)
    result["test_accuracy"], result["seconds_per_epoch"]

Batches are a deterministic function of the step (a fresh permutation per epoch from the seed,
augmentation seeded by the step), so core.train's checkpoints resume exactly.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.data.transforms import random_crop, random_hflip


@dataclass
class ImageData:
    x_train: Tensor   # (N, C, H, W) float, normalised
    y_train: Tensor   # (N,) int64
    x_test: Tensor
    y_test: Tensor


def load_images(train_size: int = 60000, test_size: int = 10000, seed: int = 0) -> ImageData:
    """Fashion-MNIST normalised by the training statistics; a class-balanced-by-chance random
    subset of `train_size` training images (seeded) and the first `test_size` test images."""
    from deepatlas.data.fashion_mnist import fashion_mnist_float

    x, y = fashion_mnist_float("train")
    xt, yt = fashion_mnist_float("test")
    if not 0 < train_size <= len(x) or not 0 < test_size <= len(xt):
        raise ValueError(f"train_size {train_size} must be in 1..{len(x)} and test_size {test_size} in 1..{len(xt)}")
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:train_size]
    return ImageData(x[keep], y[keep], xt[:test_size], yt[:test_size])


@dataclass
class ClassifyConfig:
    epochs: float = 3.0
    batch: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"       # sgd (momentum 0.9) | adamw
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.05
    label_smoothing: float = 0.0
    augment: bool = True         # random crop (pad 2) + horizontal flip
    seed: int = 0
    checkpoint_every: int = 0
    # bf16 autocast (core.train) and NHWC memory: on a CPU with AMX/AVX-512 bf16, oneDNN's
    # channels-last bf16 convolutions train a small ResNet 2–3x faster than fp32 NCHW; BatchNorm
    # and the loss stay fp32 under autocast, and the weights (and the optimizer) stay fp32
    precision: str = "fp32"      # fp32 | bf16
    channels_last: bool = False


def batch_at(data: ImageData, step: int, batch: int, seed: int, augment: bool) -> tuple[Tensor, Tensor]:
    """Batch `step`: a slice of epoch e's permutation (seeded by seed and e), augmented by a
    generator seeded by (seed, step)."""
    n = len(data.x_train)
    per_epoch = max(1, n // batch)
    epoch, i = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    idx = order[i * batch:(i + 1) * batch]
    x, y = data.x_train[idx], data.y_train[idx]
    if augment:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        # the padding value is the normalised background (0 in [0, 1] pixels), not 0
        background = float(data.x_train.min())
        x = random_hflip(random_crop(x - background, x.shape[-1], padding=2, generator=g), generator=g) + background
    return x, y


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    was = model.training
    model.eval()
    correct = sum((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum().item() for i in range(0, len(x), batch))
    model.train(was)
    return correct / len(x)


def train_classifier(model: nn.Module, data: ImageData, cfg: ClassifyConfig, run: Run | None = None,
                     checkpoint_dir: Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Train with cross-entropy; return test accuracy, steps, time per epoch and the loss curve."""
    per_epoch = max(1, len(data.x_train) // cfg.batch)
    steps = max(1, round(cfg.epochs * per_epoch))
    tc = TrainConfig(steps=steps, lr=cfg.lr, optimizer=cfg.optimizer, momentum=0.9, weight_decay=cfg.weight_decay,
                     warmup=int(cfg.warmup_fraction * steps), schedule="cosine", clip=0.0, seed=cfg.seed,
                     log_every=max(1, steps // 20), checkpoint_every=cfg.checkpoint_every, progress=False,
                     precision=cfg.precision)
    memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if cfg.channels_last:
        model.to(memory_format=memory)

    def loss_fn(m: nn.Module, b: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(m(b[0]), b[1], label_smoothing=cfg.label_smoothing)

    def get_batch(step: int, micro: int) -> tuple[Tensor, Tensor]:
        x, y = batch_at(data, step, cfg.batch, cfg.seed, cfg.augment)
        return x.contiguous(memory_format=memory), y

    torch.manual_seed(cfg.seed)
    start = time.process_time()
    result = train(model, loss_fn, get_batch, tc, run=None if run is None else run,
                   checkpoint_dir=checkpoint_dir, resume=resume)
    cpu = time.process_time() - start
    acc = accuracy(model, data.x_test, data.y_test)
    epochs = steps / per_epoch
    return {"test_accuracy": acc, "train_accuracy": accuracy(model, data.x_train[:5000], data.y_train[:5000]),
            "steps": steps, "epochs": epochs, "seconds_per_epoch": result.seconds / epochs,
            "cpu_seconds_per_epoch": cpu / epochs, "losses": result.losses}


# ---- a trained model in a run folder: model.json (family and arguments) + model.pt (weights) ------
def backbones() -> dict[str, type]:
    """The model families a run folder may hold, by name."""
    from deepatlas.models.cnn import VGG, LeNet5, ResNet
    from deepatlas.models.swin import SwinClassifier
    from deepatlas.models.vit import ViT

    return {"lenet": LeNet5, "vgg": VGG, "resnet": ResNet, "vit": ViT, "swin": SwinClassifier}


def save_model(directory: Path, kind: str, kwargs: dict[str, Any], model: nn.Module, **extra: Any) -> None:
    """Write model.json ({"kind", "kwargs", ...extra}) and model.pt (the state dict) into `directory`."""
    import json

    if kind not in backbones():
        raise ValueError(f"unknown model kind {kind!r}; valid: {', '.join(backbones())}")
    directory = Path(directory)
    (directory / "model.json").write_text(json.dumps({"kind": kind, "kwargs": kwargs, **extra}, indent=2))
    torch.save(model.state_dict(), directory / "model.pt")


class NoModelError(ValueError):
    """The folder holds no saved image model (it is not a run of A1/V1/V2/V3/V6)."""


def load_model(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, model.json's contents) from a folder save_model wrote."""
    import json

    directory = Path(directory)
    meta_path, weights = directory / "model.json", directory / "model.pt"
    if not meta_path.is_file() or not weights.is_file():
        raise NoModelError(f"{directory} holds no image model (model.json + model.pt); "
                           "runs of A1, V1, V2 and V6 save one")
    meta = json.loads(meta_path.read_text())
    families = backbones()
    if meta.get("kind") not in families:
        raise NoModelError(f"{meta_path}: model kind {meta.get('kind')!r}; valid: {', '.join(families)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["kwargs"].items()}
    model = families[meta["kind"]](**kwargs)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), meta
