"""Run the benchmarks: `python bench/run.py` (all) or `python bench/run.py train gpt` (by file
topic or benchmark function name). Prints one row per benchmark and writes runs/bench/NAME.json.

Each benchmark is run `--runs` times (default 3); the record keeps the median ours / peer / ratio
and the min–max of the ratio over the runs, plus the CPU that other processes used meanwhile
(from /proc/stat less this process's own time): a figure measured while something else ran
(over 0.1 core on average) is marked `"quiet": false` and must not be published. `--keep` also copies the records to results/bench/,
from which `make readme` writes the README's speed table.

Each bench/bench_<topic>.py defines BENCHMARKS = [fn, ...]; each fn() returns
bench.common.result(...). A benchmark that raises is reported and the others still run.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so `import bench.common` works when run as a script
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

OUT = ROOT / "runs" / "bench"
KEEP = ROOT / "results" / "bench"
QUIET_CORES = 0.1  # other processes' mean CPU use (in cores) above which a run was not quiet


def discover() -> dict[str, list]:
    """{topic: [benchmark functions]} for every bench/bench_<topic>.py (import errors → [error])."""
    found: dict[str, list] = {}
    for path in sorted((ROOT / "bench").glob("bench_*.py")):
        topic = path.stem[len("bench_"):]
        try:
            module = importlib.import_module(f"bench.{path.stem}")
            found[topic] = list(getattr(module, "BENCHMARKS"))
        except Exception as exc:  # a broken file must not stop the others
            found[topic] = [_failed_import(path.name, exc)]
    return found


def _failed_import(filename: str, exc: Exception):
    def import_failed():
        raise RuntimeError(f"importing {filename} failed: {type(exc).__name__}: {exc}")
    import_failed.__name__ = f"{Path(filename).stem}_import"
    return import_failed


def select(found: dict[str, list], names: list[str]) -> list:
    """Benchmarks whose topic or function name is in `names` (all when names is empty)."""
    if not names:
        return [fn for fns in found.values() for fn in fns]
    chosen, known = [], set(found) | {fn.__name__ for fns in found.values() for fn in fns}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; valid: {sorted(known)}")
    for topic, fns in found.items():
        chosen += [fn for fn in fns if topic in names or fn.__name__ in names]
    return chosen


def _fmt(x) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else str(x)


def _busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_repeated(fn, runs: int) -> dict:
    """fn() `runs` times: the median record, with the ratio's min–max, and how much CPU other
    processes used meanwhile (quiet = under 0.1 of a core on average)."""
    load = os.getloadavg()[0]
    busy0, own0, wall0 = _busy_seconds(), _own_seconds(), time.perf_counter()
    records = [fn() for _ in range(runs)]
    others = max(0.0, (_busy_seconds() - busy0) - (_own_seconds() - own0)) / (time.perf_counter() - wall0)
    ratios = [r["ratio"] for r in records]
    mid = sorted(records, key=lambda r: r["ratio"])[len(records) // 2]   # the run with the median ratio
    return {**mid, "ours": statistics.median(r["ours"] for r in records),
            "peer": statistics.median(r["peer"] for r in records), "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "runs": runs,
            "met": statistics.median(ratios) >= mid["goal"], "load_average_before": round(load, 2),
            "other_cores_busy": round(others, 3), "quiet": others < QUIET_CORES,
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(2)
    names = list(sys.argv[1:] if argv is None else argv)
    runs, keep = 3, False
    if "--keep" in names:
        names.remove("--keep")
        keep = True
    for arg in [a for a in names if a.startswith("--runs=")]:
        names.remove(arg)
        runs = int(arg.split("=", 1)[1])
    benchmarks = select(discover(), names)
    OUT.mkdir(parents=True, exist_ok=True)
    header = f"{'name':<32} {'ours':>10} {'peer':>10} {'ratio':>7} {'min-max':>13} {'goal':>6}  met"
    print(header)
    print("-" * len(header))
    failures = 0
    for fn in benchmarks:
        try:
            res = run_repeated(fn, runs)
        except Exception as exc:
            failures += 1
            print(f"{fn.__name__:<32} FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
            (OUT / f"{fn.__name__}.json").write_text(json.dumps(
                {"name": fn.__name__, "error": f"{type(exc).__name__}: {exc}"}, indent=2))
            continue
        spread = f"{res['ratio_min']:.2f}-{res['ratio_max']:.2f}"
        loud = "" if res["quiet"] else f"; NOT QUIET: others used {res['other_cores_busy']} cores"
        print(f"{res['name']:<32} {_fmt(res['ours']):>10} {_fmt(res['peer']):>10} "
              f"{res['ratio']:>7.3f} {spread:>13} {res['goal']:>6.3g}  {'yes' if res['met'] else 'NO'}"
              f"   ({res['unit']}; peer: {res['peer_name']}{loud})")
        path = OUT / f"{res['name']}.json"
        path.write_text(json.dumps(res, indent=2))
        if keep:
            KEEP.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, KEEP / path.name)
    print(f"{len(benchmarks) - failures} ran, {failures} failed; results in {OUT}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
