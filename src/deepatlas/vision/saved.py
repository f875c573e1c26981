"""Trained models in a run folder: a manifest (<what>.json: kind, data settings, each model's family
and constructor kwargs) and <name>.pt per model. V4 writes detector.json, V5 segmenter.json."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

# manifest file -> (what it holds, the experiment that writes it, the command that reads it)
MANIFESTS = {"detector.json": ("detectors", "V4 (detect-shapes)", "detect"),
             "segmenter.json": ("segmenters", "V5 (segment-shapes)", "segment")}


class NotAModelRun(ValueError):
    """The folder is not a run of the experiment that saves these models."""


def save_models(directory: Path, manifest: str, kind: str, models: dict[str, tuple[nn.Module, str, dict[str, Any]]],
                data: dict[str, Any]) -> None:
    """models: name -> (model, family, constructor kwargs); data: the shapes settings of the test split."""
    directory = Path(directory)
    meta = {"kind": kind, "data": data,
            "models": {k: {"family": fam, "kwargs": kw} for k, (_, fam, kw) in models.items()}}
    (directory / manifest).write_text(json.dumps(meta, indent=2))
    for name, (model, _, _) in models.items():
        torch.save(model.state_dict(), directory / f"{name}.pt")


def load_models(directory: Path, manifest: str, families: dict[str, type]) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """(name -> model in eval mode, the manifest's contents); NotAModelRun names what the folder is instead."""
    directory = Path(directory)
    what, experiment, _ = MANIFESTS[manifest]
    if not directory.is_dir():
        raise NotAModelRun(f"{directory} is not a folder; give a run folder of {experiment}")
    path = directory / manifest
    if not path.is_file():
        other = [f" (it is a run of {exp}: use `deepatlas {cmd}`)" for m, (_, exp, cmd) in MANIFESTS.items()
                 if m != manifest and (directory / m).is_file()]
        raise NotAModelRun(f"{directory} holds no {what} ({manifest}){''.join(other)}; runs of {experiment} save them")
    meta = json.loads(path.read_text())
    models = {}
    for name, spec in meta["models"].items():
        family = spec.get("family", name)
        if family not in families:
            raise NotAModelRun(f"{path}: model family {family!r}; valid: {', '.join(families)}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["kwargs"].items()}
        model = families[family](**kwargs)
        model.load_state_dict(torch.load(directory / f"{name}.pt", map_location="cpu", weights_only=True))
        models[name] = model.eval()
    return models, meta
