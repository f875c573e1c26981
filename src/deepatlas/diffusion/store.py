"""A trained diffusion model on disk: the folder `deepatlas generate-images RUN_DIR` reads.

    FOLDER/diffusion.json   {"kind": "ddpm", "setup": DDPMSetup as a dict, "train_seconds": ...}
    FOLDER/diffusion.pt     the U-Net's state_dict

cached_ddpm trains a setup once and keeps it in $DEEPATLAS_CACHE/ddpm/<hash of the setup>/ (as
metrics.features keeps its feature network), so the G8 experiment and bench_diffusion sample
from the same trained weights without training them twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch

from deepatlas.core.train import TrainConfig
from deepatlas.data.cache import build_lock, cache_dir
from deepatlas.diffusion.fashion import DDPMSetup, make_unet, train_ddpm
from deepatlas.diffusion.schedule import NoiseSchedule
from deepatlas.models.unet import UNet

META, WEIGHTS = "diffusion.json", "diffusion.pt"
KIND = "ddpm"


class NoDiffusionModel(FileNotFoundError):
    """The folder holds no saved diffusion model (or another kind of run)."""


def setup_dict(setup: DDPMSetup) -> dict:
    return dataclasses.asdict(setup)


def setup_from_dict(d: dict) -> DDPMSetup:
    d = dict(d)
    train = TrainConfig(**d.pop("train"))
    return DDPMSetup(**{**d, "channels": tuple(d["channels"]), "attention": tuple(d["attention"])}, train=train)


def save_model_folder(folder: Path, model: torch.nn.Module, meta: dict, meta_name: str = META,
                      weights_name: str = WEIGHTS) -> Path:
    """folder/weights_name (the state_dict, written atomically) and folder/meta_name (JSON)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{weights_name}.{os.getpid()}.tmp"
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, folder / weights_name)
    (folder / meta_name).write_text(json.dumps(meta, indent=1))
    return folder


def save_diffusion(folder: Path, model: UNet, setup: DDPMSetup, **extra) -> Path:
    return save_model_folder(folder, model, {"kind": KIND, "setup": setup_dict(setup), **extra})


def load_diffusion(folder: Path) -> tuple[UNet, NoiseSchedule, DDPMSetup, dict]:
    """(model in eval mode, its schedule, its setup, the metadata); NoDiffusionModel / ValueError say what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NoDiffusionModel(f"{folder} is not a folder; give a run folder of the G8 experiment "
                               "(deepatlas run guidance), e.g. runs/guidance/<time>")
    meta_path = folder / META
    if not meta_path.is_file() or not (folder / WEIGHTS).is_file():
        raise NoDiffusionModel(f"{folder} holds no diffusion model ({META} + {WEIGHTS}): it is another kind of run "
                               "folder; run `deepatlas run guidance` and give its run folder")
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") != KIND:
            raise ValueError(f"kind {meta.get('kind')!r}, expected {KIND!r}")
        setup = setup_from_dict(meta["setup"])
        model = make_unet(setup)
        model.load_state_dict(torch.load(folder / WEIGHTS, weights_only=True))
    except (KeyError, TypeError, ValueError, RuntimeError, EOFError) as err:
        raise ValueError(f"{folder} has a damaged diffusion model ({type(err).__name__}: {err})") from None
    return model.eval(), NoiseSchedule(setup.T, setup.schedule), setup, meta


def setup_hash(setup: DDPMSetup, seed: int) -> str:
    text = json.dumps({"setup": setup_dict(setup), "seed": seed, "torch": torch.__version__.split("+")[0]},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_ddpm(setup: DDPMSetup, seed: int = 0, log=print) -> tuple[UNet, NoiseSchedule, dict]:
    """The U-Net trained on `setup` (from the cache, or trained now and cached); metadata holds
    train_seconds, the loss curve's ends and whether it came from the cache."""
    folder = cache_dir("ddpm", setup_hash(setup, seed))
    with build_lock("ddpm", folder.name):   # two processes (pytest workers) build it once
        try:
            model, schedule, _, meta = load_diffusion(folder)
            return model, schedule, {**meta, "cached": True}
        except (NoDiffusionModel, ValueError):
            pass
        log(f"training the diffusion model ({setup.train.steps} steps; cached in {folder})")
        setup = dataclasses.replace(setup, train=dataclasses.replace(setup.train, checkpoint_every=0, eval_every=0))
        model, schedule, result = train_ddpm(setup, None, seed=seed)
        losses = result.losses
        meta = {"train_seconds": result.seconds, "loss_first": losses[0],
                "loss_last": sum(losses[-20:]) / len(losses[-20:]), "seed": seed}
        save_diffusion(folder, model, setup, **meta)
        return model, schedule, {"kind": KIND, **meta, "cached": False}
