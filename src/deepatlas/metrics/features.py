"""The feature network for FID/KID/IS/precision-recall: a small CNN classifier of Fashion-MNIST
that deepatlas trains itself (no Inception-v3 weights offline).

Heusel et al.'s FID uses Inception-v3's 2048-d pool features; ours are the 64-d penultimate
layer of this classifier, on the same [-1, 1] images the generators produce. The numbers rank
the models of this project against each other; they are NOT comparable to published FIDs.

The network is trained once per (image size, torch version) with a fixed seed on the training
split and cached in $DEEPATLAS_CACHE/feature-net/, so every experiment measures with the same
features (its test accuracy is stored beside the weights)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.data.cache import build_lock, cache_dir
from deepatlas.data.images import generative_images
from deepatlas.metrics.fid import fid, inception_score, kid, precision_recall

FEATURE_VERSION = 1
TRAIN_STEPS = {"fashion": 1500, "digits": 600}   # Adam steps of batch 128


class FeatureNet(nn.Module):
    """(B, 1, S, S) in [-1, 1] -> 64-d features -> 10 class logits.  S = 8, 14 or 28."""

    def __init__(self, size: int = 14, width: int = 32, dim: int = 64):
        super().__init__()
        self.size = size
        self.convs = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),               # S/2
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),       # S/4
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.fc = nn.Linear(8 * width, dim)
        self.head = nn.Linear(dim, 10)

    def features(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"feature net takes {self.size}×{self.size} images, got {tuple(x.shape[-2:])}")
        return F.relu(self.fc(self.convs(x).flatten(1)))                               # (B, 64)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _train(data: str, size: int, steps: int, seed: int = 0) -> tuple[FeatureNet, float]:
    torch.manual_seed(seed)
    x, y = generative_images(data, "train", size)
    net = FeatureNet(size)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(x), (128,), generator=g)
        xb = x[idx]
        if step % 2 and data == "fashion":         # horizontal flips: clothes are left-right symmetric
            xb = xb.flip(-1)
        loss = F.cross_entropy(net(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        for group in opt.param_groups:             # linear decay to 0
            group["lr"] = 2e-3 * (1 - (step + 1) / steps)
    xt, yt = generative_images(data, "test", size)
    net.eval()
    with torch.no_grad():
        acc = float((net(xt).argmax(1) == yt).float().mean())
    return net, acc


def feature_network(size: int = 14, data: str = "fashion", steps: int | None = None) -> tuple[FeatureNet, float]:
    """(the cached feature net for size×size images of `data`, its test accuracy); trains it (~40 s
    CPU for Fashion-MNIST) on first use."""
    steps = steps or TRAIN_STEPS[data]
    folder = cache_dir("feature-net")
    stem = f"{data}{size}-v{FEATURE_VERSION}-s{steps}-torch{torch.__version__.split('+')[0]}"
    weights, meta = folder / f"{stem}.pt", folder / f"{stem}.json"
    with build_lock("feature-net", stem):   # two processes (pytest workers) build it once
        net = FeatureNet(size)
        if weights.is_file() and meta.is_file():
            try:
                net.load_state_dict(torch.load(weights, weights_only=True))
                return net.eval(), json.loads(meta.read_text())["test_accuracy"]
            except (RuntimeError, KeyError, ValueError, EOFError):
                pass                                   # damaged cache: train again
        net, acc = _train(data, size, steps)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = weights.with_name(f"{weights.name}.{os.getpid()}.tmp")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, weights)
        meta.write_text(json.dumps({"test_accuracy": acc, "steps": steps, "size": size}))
        return net.eval(), acc


@dataclass
class SampleScores:
    fid: float
    kid: float
    inception_score: float
    precision: float
    recall: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in self.__dict__.items()}


@torch.no_grad()
def embed(net: FeatureNet, images: Tensor, batch: int = 500) -> tuple[Tensor, Tensor]:
    """(features (N, 64), class probabilities (N, 10)) of images in [-1, 1]."""
    feats, probs = [], []
    for i in range(0, len(images), batch):
        f = net.features(images[i:i + batch].clamp(-1, 1))
        feats.append(f)
        probs.append(net.head(f).softmax(-1))
    return torch.cat(feats), torch.cat(probs)


def score_samples(net: FeatureNet, samples: Tensor, real: Tensor, k: int = 3) -> SampleScores:
    """FID, KID, IS-style score and precision/recall of samples against real images."""
    fs, ps = embed(net, samples)
    fr, _ = embed(net, real)
    p, r = precision_recall(fr, fs, k)
    return SampleScores(fid(fs, fr), kid(fs, fr), inception_score(ps), p, r)
