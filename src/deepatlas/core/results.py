"""Full-setting results kept with the code: `results/<place>/<name>/`.

`deepatlas report --full` runs each experiment in its full setting (minutes) and keeps what it
found here, small enough to commit:

    results/L2/gpt-pretrain/
        result.json     the run's summary (claim, held, metrics, notes, config, seconds, plots)
                        plus a stamp: date, commit, machine (cores, CPU model, torch), the load
                        average around the run, and the sha256 of the experiment's source file
        *.png           its plots

The atlas shows these beside the quick run it makes on the spot, and tests/test_results.py
fails when an experiment has no full result or when its result was measured with an older
version of its experiment file (the hash differs): a number in the atlas always comes from the
code that is checked in.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from deepatlas.core.hardware import cpuinfo_field
from deepatlas.core.runs import write_json_atomic

REPO = Path(__file__).resolve().parents[3]   # src/deepatlas/core/results.py -> the checkout
RESULTS = REPO / "results"
RESULT_FILE = "result.json"


def source_file(exp: Any) -> Path:
    """The experiment's own source file (experiments/<id>_*.py)."""
    return Path(inspect.getsourcefile(exp.fn)).resolve()


def source_hash(exp: Any) -> str:
    """sha256 of the experiment's source file, as checked in."""
    return hashlib.sha256(source_file(exp).read_bytes()).hexdigest()


def repo_path(path: Path) -> str:
    """`path` relative to the checkout (src/deepatlas/...), or absolute when outside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def commit_stamp() -> str:
    """The checked-out commit (short hash), with '+changes' when the tree differs from it."""
    head = _git("rev-parse", "--short=10", "HEAD") or "unknown"
    return head + ("+changes" if _git("status", "--porcelain", "--untracked-files=no") else "")


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def machine_stamp() -> dict[str, Any]:
    import torch

    return {"cores": os.cpu_count(), "cpu": cpu_model(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "system": platform.system()}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def save_result(exp: Any, summary: dict, load_before: list[float] | None = None,
                root: Path = RESULTS) -> Path:
    """Keep a full-setting run's summary and plots under root/<place>/<name>/; returns the folder.

    The folder is replaced whole (written aside, then renamed), so a crash leaves the old result."""
    if summary.get("quick"):
        raise ValueError(f"{exp.name}: a quick run is not a full-setting result")
    if "error" in summary:
        raise ValueError(f"{exp.name} failed ({summary['error']}); nothing to keep")
    folder = Path(root) / exp.place / exp.name
    tmp = folder.with_name(f".{exp.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    run_dir = Path(summary["dir"])
    plots = []
    for name in summary.get("plots", []):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, tmp / name)
            plots.append(name)
    kept = {k: v for k, v in summary.items() if k not in ("dir", "traceback", "plots")}
    kept["plots"] = plots
    kept["stamp"] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit_stamp(),
        "machine": machine_stamp(),
        "seconds": summary.get("seconds"),
        "resumed": bool(summary.get("resumed")),  # seconds then count only the part after the resume
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "experiment_file": repo_path(source_file(exp)),
        "experiment_sha256": source_hash(exp),
    }
    write_json_atomic(tmp / RESULT_FILE, kept)
    if folder.exists():
        old = folder.with_name(f".{exp.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    return folder


def load_result(exp: Any, root: Path = RESULTS) -> dict | None:
    """The kept full-setting result of `exp` (with "folder" and "fresh" added), or None."""
    folder = Path(root) / exp.place / exp.name
    path = folder / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    result["folder"] = str(folder)
    result["fresh"] = result.get("stamp", {}).get("experiment_sha256") == source_hash(exp)
    return result


def bench_markdown(folder: Path = RESULTS / "bench") -> str:
    """The README's speed table from the kept `make bench` records (bench/run.py --keep).

    Only figures measured on a quiet machine are shown; ratio > 1 means deepatlas is faster."""
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    quiet = [r for r in records if r.get("quiet") and "error" not in r]
    if not quiet:
        return ("No benchmark figure has been kept from a quiet machine yet: run `make bench` with "
                "nothing else running, then `python bench/run.py --keep`.\n")
    lines = ["| benchmark | deepatlas | peer | ratio (median, min–max) | goal | met |",
             "|---|---|---|---|---|---|"]
    for r in quiet:
        spread = f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f}, {r['runs']} runs)"
        lines.append(f"| `{r['name']}` | {r['ours']:.4g} {r['unit']} | {r['peer_name']}: {r['peer']:.4g} | "
                     f"{spread} | {r['goal']:g} | {'yes' if r['met'] else '**no**'} |")
    loud = [r["name"] for r in records if not r.get("quiet") and "error" not in r]
    if loud:
        lines.append("")
        lines.append(f"Not shown (measured under load): {', '.join(f'`{n}`' for n in loud)}.")
    return "\n".join(lines) + "\n"
