"""The experiment registry: one experiment per place of the map, one file each.

An experiment states the seed's claim, runs on a config (quick or full), and returns a Verdict
whose `held` is decided from the numbers it measured:

    @dataclass
    class Config:
        steps: int = 300

    @experiment("F3", "optimizer-zigzag", claim="...", config=Config, quick={"steps": 40})
    def optimizer_zigzag(cfg: Config, run: Run) -> Verdict:
        ...
        return Verdict(held=final_loss < 1e-3, metrics={"final_loss": final_loss})
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
import json
import pkgutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from deepatlas.core import config as config_mod
from deepatlas.core.places import PLACES
from deepatlas.core.runs import Run, new_run_dir, write_json_atomic
from deepatlas.core import threads


@dataclass
class Verdict:
    """What an experiment found: did the claim hold, and the numbers that decided it."""

    held: bool
    metrics: dict[str, Any]
    notes: str = ""


@dataclass
class Experiment:
    place: str
    name: str
    claim: str
    config: type
    fn: Callable[[Any, Run], Verdict]
    quick: dict[str, Any] = field(default_factory=dict)
    one_thread: bool = False  # tiny models: a second torch/BLAS thread only adds contention
    # the numbers the atlas and README lead with: metric key -> format, e.g.
    # {"val_loss": "{:.3f} nats/char", "accuracy": "{:.1%}"}; or key -> (label, format)
    headline: dict[str, Any] = field(default_factory=dict)

    def make_config(self, quick: bool = False, overrides: list[str] = ()) -> Any:
        cfg = self.config()
        if quick:
            cfg = config_mod.override(cfg, [f"{k}={v}" for k, v in self.quick.items()])
        return config_mod.override(cfg, list(overrides))


EXPERIMENTS: dict[str, Experiment] = {}  # by name


def experiment(place: str, name: str, claim: str, config: type, quick: dict | None = None,
               one_thread: bool = False, headline: dict[str, Any] | None = None):
    """Register `fn(cfg, run) -> Verdict` as the experiment of map place `place`.

    one_thread=True runs it with torch and BLAS limited to one thread (core.threads): for
    matrices of a few thousand entries, thread synchronisation costs more than it saves.
    headline: the metrics the atlas shows first, key -> format string ("{:.3f} nats/char",
    "{:.1%}") or key -> (label, format)."""
    if place not in PLACES:
        raise ValueError(f"unknown map place {place!r}; valid ids: {', '.join(PLACES)}")
    for key, spec in (headline or {}).items():
        fmt = spec[1] if isinstance(spec, tuple) else spec
        if not isinstance(fmt, str) or "{" not in fmt:
            raise ValueError(f"headline {key!r} of {name!r}: format {spec!r} should be a str like '{{:.3f}} s'")

    def register(fn: Callable[[Any, Run], Verdict]) -> Callable[[Any, Run], Verdict]:
        if name in EXPERIMENTS:
            raise ValueError(f"experiment name {name!r} registered twice")
        EXPERIMENTS[name] = Experiment(place, name, claim, config, fn, dict(quick or {}), one_thread,
                                       dict(headline or {}))
        return fn

    return register


def load_all() -> dict[str, Experiment]:
    """Import every module in deepatlas.experiments so their @experiment lines run."""
    import deepatlas.experiments as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    return EXPERIMENTS


def by_place() -> dict[str, list[Experiment]]:
    load_all()
    out: dict[str, list[Experiment]] = {}
    for exp in EXPERIMENTS.values():
        out.setdefault(exp.place, []).append(exp)
    return out


class UnknownExperiment(LookupError):
    pass


def find(key: str) -> list[Experiment]:
    """Experiments named `key`, or all experiments of place `key` (F3, l2, ...)."""
    load_all()
    if key in EXPERIMENTS:
        return [EXPERIMENTS[key]]
    place = key.upper()
    found = [e for e in EXPERIMENTS.values() if e.place == place]
    if found:
        return found
    choices = list(EXPERIMENTS) + sorted({e.place for e in EXPERIMENTS.values()})
    close = difflib.get_close_matches(key, choices, n=3, cutoff=0.5) or difflib.get_close_matches(
        key.upper(), choices, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if place in PLACES:
        raise UnknownExperiment(f"place {place} ({PLACES[place].title}) has no experiment yet.{hint}")
    raise UnknownExperiment(f"no experiment or place named {key!r}.{hint} `deepatlas list` shows them all.")


class ResumeError(ValueError):
    """--resume named a folder that is not a resumable run of this experiment."""


def read_resumable(exp: Experiment, directory: Path, overrides: list[str] = ()) -> tuple[Any, bool]:
    """The config and quick flag saved in run folder `directory`, checked to belong to `exp`.

    Overrides given with --resume must not change the saved config (a resumed run that trained
    its second half on other settings would equal no uninterrupted run)."""
    directory = Path(directory)
    meta_path, config_path = directory / "experiment.json", directory / "config.json"
    if not directory.is_dir():
        raise ResumeError(f"--resume {directory}: no such run folder")
    if not meta_path.is_file() or not config_path.is_file():
        raise ResumeError(f"--resume {directory}: not a deepatlas run folder (no experiment.json / config.json)")
    try:
        meta = json.loads(meta_path.read_text())
        saved = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ResumeError(f"--resume {directory}: damaged run folder ({err})") from None
    if meta.get("name") != exp.name:
        raise ResumeError(f"--resume {directory}: that folder is a run of {meta.get('name')!r}, not {exp.name!r}")
    quick = bool(meta.get("quick"))
    try:
        cfg = config_mod.from_dict(exp.config, saved)
    except (config_mod.ConfigError, TypeError) as err:
        raise ResumeError(f"--resume {directory}: its config no longer fits {exp.name} ({err})") from None
    if overrides:
        before = _flatten_dict(config_mod.to_dict(cfg))
        after = _flatten_dict(config_mod.to_dict(config_mod.override(cfg, list(overrides))))
        changed = sorted(k for k, v in after.items() if before.get(k) != v)
        if changed:
            raise ResumeError(f"--resume {directory}: overrides change the saved config ({', '.join(changed)}); "
                              "a resumed run continues with the settings it started with")
    return cfg, quick


def _flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_experiment(exp: Experiment, quick: bool = False, out: Path | None = None,
                   root: Path = Path("runs"), device: str = "cpu", overrides: list[str] = (),
                   echo: bool = True, resume: Path | None = None) -> dict:
    """Run one experiment into a fresh run folder; return (and write) its summary.json.

    resume=RUN_DIR continues a killed run in its own folder, with its saved config: training
    experiments pick up their newest checkpoint there (Run.resuming)."""
    if resume is not None:
        cfg, quick = read_resumable(exp, Path(resume), overrides)
        directory = Path(resume)
    else:
        cfg = exp.make_config(quick, overrides)
        directory = Path(out) if out else new_run_dir(root, exp.name)
    run = Run(directory, device=device, quick=quick, echo=echo, resuming=resume is not None)
    if resume is None:
        write_json_atomic(run.dir / "experiment.json", {"name": exp.name, "place": exp.place, "quick": quick})
        write_json_atomic(run.dir / "config.json", config_mod.to_dict(cfg))
    start = time.time()
    summary = {"place": exp.place, "name": exp.name, "claim": exp.claim, "quick": quick,
               "config": config_mod.to_dict(cfg)}
    try:
        with threads.one_thread() if exp.one_thread else contextlib.nullcontext():
            verdict = exp.fn(cfg, run)
        if not isinstance(verdict, Verdict):
            raise TypeError(f"experiment {exp.name} returned {type(verdict).__name__}, not a Verdict")
        summary.update(held=bool(verdict.held), metrics=verdict.metrics, notes=verdict.notes)
    except Exception as err:  # the summary records the failure; the caller decides what to raise
        summary.update(held=False, metrics={}, error=f"{type(err).__name__}: {err}",
                       traceback=traceback.format_exc())
    finally:
        run.close()
    summary.update(seconds=round(time.time() - start, 2), plots=run.plots, dir=str(run.dir),
                   device=run.device_used)
    if run.device_used != device:
        summary["device_ignored"] = f"asked for {device}, ran on the CPU: {exp.name} does not read --device"
    if resume is not None:
        summary["resumed"] = True
    write_json_atomic(run.dir / "summary.json", summary)
    return summary
