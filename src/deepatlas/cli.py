"""The `deepatlas` command: list the map, run an experiment, write the atlas report.

Other commands (sample, chat, generate, ...) live beside the code they drive; each such module
has `add_parser(subparsers)` that registers its sub-command, and is named in COMMAND_MODULES.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

COMMAND_MODULES: list[str] = [
    # modules with add_parser(subparsers); each sets a `func(args) -> int` default
    "deepatlas.chat.cli",
    "deepatlas.generation.cli",
    "deepatlas.explain.cli",
    "deepatlas.core.doctor",
    "deepatlas.audio.cli",
    "deepatlas.models.embed_cli",
    "deepatlas.deploy.cli",
    "deepatlas.rag.cli",
    "deepatlas.agents.cli",
    "deepatlas.serve.cli",
    "deepatlas.diffusion.cli",
    "deepatlas.vision.cli",
    "deepatlas.multimodal.cli",
]


def _cmd_list(args: argparse.Namespace) -> int:
    from deepatlas.core.places import PLACES
    from deepatlas.core.registry import by_place
    from deepatlas.core.runs import latest_summary

    if args.markdown or args.results or args.speed:
        from deepatlas.core.report import map_markdown, results_markdown
        from deepatlas.core.results import bench_markdown

        print(results_markdown() if args.results else bench_markdown() if args.speed else map_markdown(), end="")
        return 0
    groups = by_place()
    part = None
    for pid, place in PLACES.items():
        if place.part != part:
            part = place.part
            print(f"\n{part}")
        exps = groups.get(pid, [])
        if not exps:
            print(f"  {pid:3} {'-':24} {'not built yet':12} {place.title[:60]}")
        for exp in exps:
            last = latest_summary(Path(args.root), exp.name)
            verdict = "never run" if last is None else ("held" if last.get("held") else "NOT held")
            if last is not None and last.get("quick"):
                verdict += " (quick)"
            print(f"  {pid:3} {exp.name:24} {verdict:12} {place.title[:60]}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from deepatlas.core.config import ConfigError
    from deepatlas.core.device import pick
    from deepatlas.core.registry import UnknownExperiment, find, read_resumable, run_experiment

    try:
        device = pick(args.device)
        exps = find(args.name)
        if args.resume and len(exps) > 1:
            raise ValueError(f"--resume names one run folder but {args.name} has {len(exps)} experiments; "
                             f"name one: {', '.join(e.name for e in exps)}")
        if args.resume and (args.out or args.quick):
            raise ValueError("--resume continues the run in its own folder with its own settings; "
                             "drop --out / --quick")
        for exp in exps:  # validate every override (and the folder to resume) before anything runs
            if args.resume:
                read_resumable(exp, Path(args.resume), args.overrides)
            else:
                exp.make_config(args.quick, args.overrides)
    except (UnknownExperiment, ConfigError, ValueError) as err:
        print(f"deepatlas: {err}", file=sys.stderr)
        return 2
    if args.out and len(exps) > 1:
        print(f"deepatlas: --out names one folder but {args.name} has {len(exps)} experiments", file=sys.stderr)
        return 2
    failed = 0
    for exp in exps:
        print(f"[{exp.place}] {exp.name}: {exp.claim}", flush=True)
        summary = run_experiment(exp, quick=args.quick, out=args.out, root=Path(args.root),
                                 device=device, overrides=args.overrides,
                                 resume=Path(args.resume) if args.resume else None)
        if "error" in summary:
            failed += 1
            print(summary["traceback"], file=sys.stderr)
            print(f"deepatlas: {exp.name} failed: {summary['error']}", file=sys.stderr)
            continue
        for key, value in summary["metrics"].items():
            print(f"  {key} = {value}")
        print(f"  claim {'HELD' if summary['held'] else 'did NOT hold'}; run folder {summary['dir']}")
        if "device_ignored" in summary:
            print(f"  note: {summary['device_ignored']}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from deepatlas.core.report import write_report

    path, summaries = write_report(Path(args.root), full=args.full, only=args.only)
    held = sum(bool(s.get("held")) for s in summaries)
    print(f"{held}/{len(summaries)} claims held. Atlas: {path.resolve()}")
    return 0 if all("error" not in s for s in summaries) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepatlas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="the places of the map, their experiments and last verdicts")
    p.add_argument("--root", default="runs", help="folder of run folders (default: runs)")
    p.add_argument("--markdown", action="store_true", help="print the map table the README shows")
    p.add_argument("--results", action="store_true",
                   help="print the table of kept full-setting results (results/) the README shows")
    p.add_argument("--speed", action="store_true",
                   help="print the speed table of kept quiet-machine benchmarks (results/bench/)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("run", help="run one experiment (by name) or every experiment of a place (by id)")
    p.add_argument("name", help="experiment name or map id, e.g. F3 or optimizer-zigzag")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. steps=100")
    p.add_argument("--quick", action="store_true", help="the small setting a test runs (seconds)")
    p.add_argument("--out", help="run folder (default: runs/<name>/<time>)")
    p.add_argument("--root", default="runs", help="where run folders go (default: runs)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu); an experiment that "
                   "does not read it runs on the CPU and its summary says so")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a killed run from its newest checkpoint, in its folder, with its settings")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="run every experiment and write one HTML atlas")
    p.add_argument("--full", action="store_true",
                   help="full settings (minutes each) instead of quick; each run is kept in results/<place>/<name>/")
    p.add_argument("--root", default="runs", help="where run folders and atlas.html go")
    p.add_argument("--only", nargs="*", default=None, help="only these experiments or places")
    p.set_defaults(func=_cmd_report)

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may also come after options: `deepatlas run X --quick steps=3`
    if extra and args.command == "run" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `deepatlas list | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
