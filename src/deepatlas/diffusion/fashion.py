"""A DDPM on 14×14 Fashion-MNIST: the model, its training and its FID, shared by G7 and G8.

Pixels in [-1, 1] (data.images), the U-Net of models/unet.py, L_simple (sampling.diffusion_loss)
trained with core.train (checkpointed, resumable), FID/KID on metrics.features' own network."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, TrainResult, train
from deepatlas.data.images import generative_images
from deepatlas.diffusion.sampling import Denoiser, diffusion_loss, guided_denoiser, sample_batched
from deepatlas.diffusion.schedule import NoiseSchedule
from deepatlas.models.unet import UNet, UNetConfig

N_CLASSES = 10
NULL_LABEL = N_CLASSES          # the "no label" class of classifier-free guidance


@dataclass
class DDPMSetup:
    T: int = 1000
    schedule: str = "linear"           # linear | cosine
    prediction: str = "epsilon"        # epsilon | sample | v_prediction
    data: str = "fashion"              # fashion | digits (8×8, the quickest runs)
    size: int = 14
    channels: tuple[int, ...] = (16, 32)
    attention: tuple[bool, ...] = (False, True)
    head_dim: int = 8
    conditional: bool = False          # class embedding with a null class (classifier-free guidance)
    p_uncond: float = 0.15             # label dropout while training (Ho & Salimans 2022 use 0.1–0.2)
    batch_size: int = 64
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=1200, lr=2e-3, min_lr=1e-4, warmup=50, schedule="cosine", eval_every=400,
        checkpoint_every=200, log_every=50))


def make_unet(setup: DDPMSetup) -> UNet:
    return UNet(UNetConfig(channels=setup.channels, attention=setup.attention, head_dim=setup.head_dim,
                           groups=min(8, setup.channels[0]),
                           class_embeds=N_CLASSES + 1 if setup.conditional else 0))


def train_ddpm(setup: DDPMSetup, run: Run | None, evaluate: Callable[[UNet], dict] | None = None,
               seed: int = 0) -> tuple[UNet, NoiseSchedule, TrainResult]:
    """Train a U-Net on the training images; get_batch is a function of the step (exact --resume)."""
    x, y = generative_images(setup.data, "train", setup.size)
    schedule = NoiseSchedule(setup.T, setup.schedule)
    torch.manual_seed(seed)
    model = make_unet(setup)

    def get_batch(step: int, micro: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, len(x), (setup.batch_size,), generator=g)
        return x[idx], y[idx]

    def loss_fn(m: UNet, batch: tuple[Tensor, Tensor]) -> Tensor:
        xb, yb = batch
        if setup.conditional:
            return diffusion_loss(m, schedule, xb, yb, setup.prediction, setup.p_uncond, NULL_LABEL)
        return diffusion_loss(m, schedule, xb, None, setup.prediction)

    cfg = TrainConfig(**{**setup.train.__dict__, "seed": seed})
    result = train(model, loss_fn, get_batch, cfg, run=run, evaluate=evaluate,
                   checkpoint_dir=run.checkpoint_dir if run is not None and cfg.checkpoint_every else None,
                   resume=bool(run is not None and run.resuming))
    return model.eval(), schedule, result


def denoiser_for(model: UNet, setup: DDPMSetup, labels: Tensor | None = None,
                 scale: float = 1.0) -> Callable[[slice], Denoiser]:
    """Per-batch denoiser builder for sample_batched: unconditional (null label for a conditional
    model), or labels[rows] with classifier-free guidance scale."""
    def build(rows: slice) -> Denoiser:
        if not setup.conditional:
            return guided_denoiser(model)
        n = rows.stop - rows.start
        lab = torch.full((n,), NULL_LABEL, dtype=torch.long) if labels is None else labels[rows]
        return guided_denoiser(model, lab, scale, NULL_LABEL)
    return build


def generate(model: UNet, schedule: NoiseSchedule, setup: DDPMSetup, n: int, sampler: str = "ddim",
             steps: int | None = 50, seed: int = 0, labels: Tensor | None = None, scale: float = 1.0,
             eta: float = 0.0, clipped_eps: bool = False) -> Tensor:
    return sample_batched(denoiser_for(model, setup, labels, scale), schedule, n, (1, setup.size, setup.size),
                          seed=seed, sampler=sampler, steps=steps, eta=eta, prediction=setup.prediction,
                          clipped_eps=clipped_eps)
