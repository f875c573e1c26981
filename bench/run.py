"""Run the benchmarks: `python bench/run.py` (all) or `python bench/run.py train gpt` (by file
topic or benchmark function name). Prints one row per benchmark and writes runs/bench/NAME.json.

Each bench/bench_<topic>.py defines BENCHMARKS = [fn, ...]; each fn() returns
bench.common.result(...). A benchmark that raises is reported and the others still run.
"""
from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so `import bench.common` works when run as a script
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

OUT = ROOT / "runs" / "bench"


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


def main(argv: list[str] | None = None) -> int:
    torch.set_num_threads(2)
    names = sys.argv[1:] if argv is None else argv
    benchmarks = select(discover(), names)
    OUT.mkdir(parents=True, exist_ok=True)
    header = f"{'name':<32} {'ours':>10} {'peer':>10} {'ratio':>7} {'goal':>6}  met"
    print(header)
    print("-" * len(header))
    failures = 0
    for fn in benchmarks:
        try:
            res = fn()
        except Exception as exc:
            failures += 1
            print(f"{fn.__name__:<32} FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
            (OUT / f"{fn.__name__}.json").write_text(json.dumps(
                {"name": fn.__name__, "error": f"{type(exc).__name__}: {exc}"}, indent=2))
            continue
        print(f"{res['name']:<32} {_fmt(res['ours']):>10} {_fmt(res['peer']):>10} "
              f"{res['ratio']:>7.3f} {res['goal']:>6.3g}  {'yes' if res['met'] else 'NO'}"
              f"   ({res['unit']}; peer: {res['peer_name']})")
        (OUT / f"{res['name']}.json").write_text(json.dumps(res, indent=2))
    print(f"{len(benchmarks) - failures} ran, {failures} failed; results in {OUT}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
