"""Checkpoints that survive crashes and never unpickle.

    save_checkpoint(dir, model, optimizer, step, config, extra)
    state = load_checkpoint(dir, model, optimizer)    # -> {"step", "config", "extra", "path"}

Layout of `dir`:

    latest                     the name of the newest complete checkpoint folder (one line)
    step-00000100/
        model.safetensors      model tensors (tied weights stored once, see _dedupe)
        optimizer.safetensors  optimizer state tensors, keyed "<param index>.<name>"
        meta.json              step, config, extra, optimizer scalars and param_groups,
                               python/numpy/torch RNG states, sizes and sha256 of the files

Why this shape: a new checkpoint is written in full into a temporary folder, each file fsynced,
then renamed into place, and only then does `latest` (itself replaced atomically) point at it.
A crash at any moment leaves `latest` naming a complete checkpoint. Loading reads only
safetensors and JSON (no pickle: a checkpoint from elsewhere cannot run code), and checks each
file's size and sha256, so truncation or corruption is a CheckpointError naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from deepatlas.core.runs import write_json_atomic

FORMAT = "deepatlas-checkpoint-1"
LATEST = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or does not fit the model."""


def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: {' '.join(str(what).split())}")  # always one line


# ---------------------------------------------------------------- writing

def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file(tensors, str(path))
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses tensors that share memory, e.g. GPT's wte.weight and lm_head.weight.

    The same view seen twice is stored once and recorded as an alias (restored on load);
    different views of one storage are copied so each is saved on its own."""
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    views: dict[tuple, str] = {}
    storages: set[int] = set()
    for key, t in state.items():
        t = t.detach()
        ptr = t.untyped_storage().data_ptr() if t.numel() else 0
        view = (t.device, ptr, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if ptr and view in views:
            aliases[key] = views[view]
            continue
        if not ptr or ptr in storages or not t.is_contiguous():
            t = t.clone(memory_format=torch.contiguous_format)  # a private, contiguous copy
        else:
            views[view] = key
            storages.add(ptr)
        unique[key] = t.cpu()
    return unique, aliases


def _rng_state() -> dict:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def _file_record(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def save_checkpoint(directory: Path | str, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    step: int, config: dict | None = None, extra: dict | None = None, keep: int = 1) -> Path:
    """Write a checkpoint of `model` (and `optimizer`) after `step` updates; keep the newest `keep`.

    Returns the checkpoint's folder. `config` and `extra` must be JSON-serialisable."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".tmp-*"):  # left by a crash during an earlier save
        shutil.rmtree(stale, ignore_errors=True)
    name = f"step-{step:08d}"
    tmp = directory / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    try:
        tensors, aliases = _dedupe(model.state_dict())
        _save_tensors(tensors, tmp / "model.safetensors")
        meta: dict[str, Any] = {"format": FORMAT, "step": int(step), "config": config or {},
                                "extra": extra or {}, "model_aliases": aliases, "optimizer": None,
                                "rng": _rng_state()}
        if optimizer is not None:
            opt = optimizer.state_dict()
            opt_tensors, scalars = {}, {}
            for index, param_state in opt["state"].items():
                for key, value in param_state.items():
                    if isinstance(value, torch.Tensor):
                        opt_tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
                    else:
                        scalars.setdefault(str(index), {})[key] = value
            _save_tensors(opt_tensors, tmp / "optimizer.safetensors")
            meta["optimizer"] = {"param_groups": opt["param_groups"], "scalars": scalars}
        meta["files"] = {p.name: _file_record(p) for p in sorted(tmp.glob("*.safetensors"))}
        write_json_atomic(tmp / "meta.json", meta)
        _fsync_dir(tmp)
        final = directory / name
        if final.exists():  # saving the same step again: move the old copy out of the way first
            os.replace(final, directory / f".tmp-old-{name}-{os.getpid()}")
        os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # only now does `latest` move: until this replace, it names the previous complete checkpoint
    pointer = directory / f".tmp-{LATEST}"
    with open(pointer, "w") as f:
        f.write(name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(pointer, directory / LATEST)
    _fsync_dir(directory)
    for old in sorted(directory.glob("step-*"))[:-keep] if keep > 0 else []:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    for stale in directory.glob(".tmp-old-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


# ---------------------------------------------------------------- reading

def latest_checkpoint(directory: Path | str) -> Path | None:
    """The folder `latest` names, or None when `directory` holds no checkpoint yet."""
    pointer = Path(directory) / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not name.startswith("step-") or "/" in name or os.sep in name:
        raise _fail(pointer, f"expected a checkpoint folder name like step-00000100, found {name[:40]!r}")
    folder = pointer.parent / name
    if not folder.is_dir():
        raise _fail(folder, "missing: the folder `latest` names does not exist")
    return folder


def _read_meta(folder: Path) -> dict:
    path = folder / "meta.json"
    if not path.is_file():
        raise _fail(path, "missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _fail(path, f"not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _fail(path, f"not a {FORMAT} checkpoint (format={meta.get('format') if isinstance(meta, dict) else None!r})")
    return meta


def _load_tensors(folder: Path, name: str, meta: dict) -> dict[str, torch.Tensor]:
    path = folder / name
    if not path.is_file():
        raise _fail(path, "missing")
    record = meta.get("files", {}).get(name)
    if record is None:
        raise _fail(path, "not listed in meta.json")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise _fail(path, f"truncated or overwritten: {size} bytes, meta.json says {record['bytes']}")
    if _file_record(path)["sha256"] != record["sha256"]:
        raise _fail(path, "corrupt: sha256 differs from the one recorded in meta.json")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors' own parse errors
        raise _fail(path, f"unreadable safetensors ({type(err).__name__}: {err})") from None


def _restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _check_fits(path: Path, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise _fail(path, f"does not fit the model: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for key, t in tensors.items():
        if t.shape != expected[key].shape:
            raise _fail(path, f"{key} has shape {tuple(t.shape)}, the model expects {tuple(expected[key].shape)}")


def load_checkpoint(directory: Path | str, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = True) -> dict:
    """Restore the newest checkpoint in `directory` into `model` (and `optimizer`, and the RNGs).

    Returns {"step", "config", "extra", "path"}. Raises CheckpointError (one line, naming the file)
    when there is no checkpoint or a file is missing, truncated, corrupt or does not fit."""
    folder = latest_checkpoint(directory)
    if folder is None:
        raise _fail(Path(directory) / LATEST, "missing: no checkpoint has been saved here")
    meta = _read_meta(folder)
    tensors = _load_tensors(folder, "model.safetensors", meta)
    for alias, canonical in meta.get("model_aliases", {}).items():
        tensors[alias] = tensors[canonical]  # tied weights: one stored tensor, several names
    _check_fits(folder / "model.safetensors", model, tensors)
    if optimizer is not None:
        if meta["optimizer"] is None:
            raise _fail(folder / "meta.json", "has no optimizer state, but an optimizer was given to restore")
        flat = _load_tensors(folder, "optimizer.safetensors", meta)
        state: dict[int, dict[str, Any]] = {}
        for index, scalars in meta["optimizer"]["scalars"].items():
            state.setdefault(int(index), {}).update(scalars)
        for key, value in flat.items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        groups = meta["optimizer"]["param_groups"]
        if len(groups) != len(optimizer.param_groups):
            raise _fail(folder / "meta.json", f"{len(groups)} optimizer param groups, the optimizer has {len(optimizer.param_groups)}")
        for saved, current in zip(groups, optimizer.param_groups):  # JSON made tuples (betas) lists
            for key, value in current.items():
                if isinstance(value, tuple) and isinstance(saved.get(key), list):
                    saved[key] = tuple(saved[key])
        try:
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError, RuntimeError) as err:
            raise _fail(folder / "optimizer.safetensors", f"does not fit the optimizer ({err})") from None
    model.load_state_dict(tensors, strict=True)
    if restore_rng:
        _restore_rng(meta["rng"])
    return {"step": meta["step"], "config": meta["config"], "extra": meta["extra"], "path": folder}
