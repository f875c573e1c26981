"""The atlas: one self-contained HTML page with, per place, the claim, numbers, plots, verdict."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from deepatlas.core.places import PLACES
from deepatlas.core.registry import Experiment, find, load_all, run_experiment

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h2{border-bottom:1px solid #ccc;margin-top:2em} .place{margin:1.2em 0;padding:.6em 1em;border-left:6px solid #999}
.held{border-color:#2a2} .failed{border-color:#c22} .none{border-color:#ccc;color:#777}
table{border-collapse:collapse;font-size:90%} td{padding:2px 10px;border-bottom:1px solid #eee;font-family:monospace}
img{max-width:48%;margin:4px;border:1px solid #ddd} .verdict{font-weight:bold}
"""


def _metrics_table(metrics: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
                   for k, v in metrics.items())
    return f"<table>{rows}</table>"


def _images(summary: dict) -> str:
    out = []
    for name in summary.get("plots", []):
        path = Path(summary["dir"]) / name
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode()
            out.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
    return "".join(out)


def render(summaries: list[dict], full: bool) -> str:
    by_place: dict[str, list[dict]] = {}
    for s in summaries:
        by_place.setdefault(s["place"], []).append(s)
    held = sum(bool(s.get("held")) for s in summaries)
    parts = [f"<!doctype html><meta charset=utf-8><title>deepatlas</title><style>{STYLE}</style>",
             "<h1>deepatlas — the atlas</h1>",
             f"<p>{held} of {len(summaries)} experiments held their claim "
             f"({'full' if full else 'quick'} settings). Places without an experiment are grey.</p>"]
    part = None
    for pid, place in PLACES.items():
        if place.part != part:
            part = place.part
            parts.append(f"<h2>{html.escape(part)}</h2>")
        runs = by_place.get(pid)
        if not runs:
            parts.append(f'<div class="place none"><b>{pid}</b> {html.escape(place.title)} — not built yet</div>')
            continue
        for s in runs:
            ok = s.get("held") and "error" not in s
            verdict = "held" if ok else ("error: " + s["error"] if "error" in s else "did NOT hold")
            parts.append(
                f'<div class="place {"held" if ok else "failed"}"><b>{pid}</b> {html.escape(place.title)}'
                f'<br><i>Claim ({html.escape(s["name"])}):</i> {html.escape(s["claim"])}'
                f'<br><span class="verdict">{html.escape(verdict)}</span> in {s.get("seconds", 0)} s'
                f'{"<p>" + html.escape(s["notes"]) + "</p>" if s.get("notes") else ""}'
                f'{_metrics_table(s.get("metrics", {}))}{_images(s)}</div>')
    return "\n".join(parts)


def write_report(root: Path, full: bool = False, only: list[str] | None = None,
                 echo: bool = True) -> tuple[Path, list[dict]]:
    """Run the experiments (quick unless full) and write root/atlas.html."""
    load_all()
    exps: list[Experiment] = []
    for key in only or []:
        exps += [e for e in find(key) if e not in exps]
    if only is None:
        exps = sorted(load_all().values(), key=lambda e: list(PLACES).index(e.place))
    summaries = []
    for exp in exps:
        if echo:
            print(f"[{exp.place}] {exp.name} ...", flush=True)
        s = run_experiment(exp, quick=not full, root=root, echo=False)
        if echo:
            print(f"    {'held' if s['held'] else 'NOT held'} ({s['seconds']} s)"
                  + (f" error: {s['error']}" if "error" in s else ""), flush=True)
        summaries.append(s)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "atlas.html"
    path.write_text(render(summaries, full))
    return path, summaries


def map_markdown() -> str:
    """The README's map: every place with its experiments (a test keeps the README equal to this)."""
    from deepatlas.core.registry import by_place

    groups = by_place()
    lines, part = [], None
    for pid, place in PLACES.items():
        if place.part != part:
            part = place.part
            lines += ["", f"**{part}**", "", "| id | place | experiment | status |", "|---|---|---|---|"]
        exps = groups.get(pid, [])
        names = ", ".join(f"`{e.name}`" for e in exps) or "—"
        status = "built · checked · shown" if exps else "not built yet"
        lines.append(f"| {pid} | {place.title} | {names} | {status} |")
    return "\n".join(lines).strip() + "\n"
