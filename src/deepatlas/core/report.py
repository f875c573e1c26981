"""The atlas: one self-contained HTML page — the whole map, and per place its claim, numbers,
plots, verdict and the code and tests behind them.

    write_report(Path("runs"))              quick runs made now + the kept full results
    write_report(Path("runs"), full=True)   full runs, each kept in results/<place>/<name>/

Layout (tests/test_atlas_browser.py drives it in Chromium): `<nav id="map">` holds one
`<a class="cell" href="#place-ID" data-place="ID" data-state="STATE">` per place, and each
place has `<section id="place-ID" class="place" data-state="STATE">`. STATE is `held` (its
experiments held in this atlas's runs), `failed` (one did not hold or crashed), `built` (it has
an experiment but no run in this atlas) or `none` (no experiment yet).
"""
from __future__ import annotations

import ast
import base64
import datetime as _dt
import functools
import html
import importlib.util
import math
import os
from pathlib import Path
from typing import Any

from deepatlas.core.atlas_style import CSS, SCRIPT
from deepatlas.core.places import PLACES
from deepatlas.core.registry import Experiment, by_place, find, load_all, run_experiment
from deepatlas.core.results import (REPO, RESULTS, commit_stamp, cpu_model, load_average, load_result,
                                    repo_path, save_result, source_file)

esc = html.escape


# ------------------------------------------------------------------ numbers a person can read

def fmt_value(value: Any) -> str:
    """0.9611111111111111 -> 0.9611; 4.44e-16 -> 4.4e-16; True -> yes; lists/dicts compactly."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) < 1e-3 or abs(value) >= 1e6:
            return f"{value:.2e}"
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        shown = ", ".join(fmt_value(v) for v in value[:12])
        return f"[{shown}{', …' if len(value) > 12 else ''}]"
    return "—" if value is None else str(value)


def headline(exp: Experiment, metrics: dict) -> list[tuple[str, str, str]]:
    """(key, label, formatted value) for each headline metric the experiment declares."""
    rows = []
    for key, spec in exp.headline.items():
        label, form = spec if isinstance(spec, tuple) else (key.replace("_", " "), spec)
        if key not in metrics:
            rows.append((key, label, "—"))
            continue
        value = metrics[key]
        try:
            text = form.format(fmt_value(value) if isinstance(value, bool) else value)
        except (ValueError, TypeError):
            text = fmt_value(value)
        rows.append((key, label, text))
    return rows


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


# ------------------------------------------------------------------ code and tests behind a place

def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def library_modules(exp: Experiment) -> list[str]:
    """deepatlas modules the experiment file imports (core and experiments left out)."""
    try:
        tree = ast.parse(source_file(exp).read_text())
    except (OSError, SyntaxError):  # a file removed or half-written since it was imported
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deepatlas."):
            for alias in node.names:  # `from deepatlas.models import gpt` names a module too
                sub = f"{node.module}.{alias.name}"
                names.append(sub if _module_file(sub) else node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("deepatlas.")]
    keep = [n for n in dict.fromkeys(names)
            if not n.startswith(("deepatlas.core", "deepatlas.experiments")) and _module_file(n)]
    return sorted(keep)


@functools.lru_cache(maxsize=1)
def _test_files() -> tuple[tuple[Path, str], ...]:
    """Every tests/**/test_*.py with its text, read once per page rather than once per experiment."""
    tests_dir = REPO / "tests"
    if not tests_dir.is_dir():
        return ()
    return tuple((p, p.read_text(errors="replace")) for p in sorted(tests_dir.rglob("test_*.py")))


def code_files(exp: Experiment) -> dict[str, list[str]]:
    """{"experiment": [...], "code": [...], "tests": [...]} as paths relative to the checkout."""
    modules = library_modules(exp)
    code = [repo_path(_module_file(m)) for m in modules]
    tests_dir = REPO / "tests"
    needle = (f'run_quick("{exp.name}"', f"run_quick('{exp.name}'")
    tests = [repo_path(path) for path, text in _test_files() if any(n in text for n in needle)]
    if tests_dir.is_dir():
        for m in modules:  # tests/ mirrors src/: deepatlas.models.gpt -> tests/models/test_gpt.py
            parts = m.split(".")[1:]
            mirror = tests_dir.joinpath(*parts[:-1], f"test_{parts[-1]}.py")
            if mirror.is_file() and repo_path(mirror) not in tests:
                tests.append(repo_path(mirror))
    return {"experiment": [repo_path(source_file(exp))], "code": code, "tests": tests}


# ------------------------------------------------------------------ the page

def _short(title: str, limit: int = 30) -> str:
    """A map cell's label: the title up to its first ':' or ',', cut at a word (…)."""
    head = title.split(":")[0].split(",")[0].split(";")[0].strip()
    if len(head) <= limit:
        return head
    words, out = head.split(), ""
    for w in words:
        if len(out) + len(w) + 1 > limit - 1:
            break
        out = f"{out} {w}".strip()
    return (out or head[:limit - 1]) + "…"


def _state(exps: list[Experiment], runs: dict[str, dict]) -> str:
    if not exps:
        return "none"
    done = [runs[e.name] for e in exps if e.name in runs]
    if not done:
        return "built"
    return "held" if all(s.get("held") and "error" not in s for s in done) else "failed"


def _img(path: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img class="plot" alt="{esc(caption)}" loading="lazy" '
            f'src="data:image/png;base64,{data}"><figcaption>{esc(caption)}</figcaption></figure>')


def _verdict_badge(summary: dict, what: str) -> str:
    if "error" in summary:
        return f'<span class="badge failed">{esc(what)}: crashed</span>'
    ok = summary.get("held")
    return f'<span class="badge {"held" if ok else "failed"}">{esc(what)}: {"held" if ok else "did not hold"}</span>'


def _stamp_line(kept: dict) -> str:
    st = kept.get("stamp", {})
    m = st.get("machine", {})
    load = st.get("load_average_before")
    load_txt = f", load average {load[0]:.1f} at start" if load else ""
    return (f"full setting, measured on {esc(st.get('date', '?'))} on {esc(str(m.get('cpu', '?')))} "
            f"({m.get('cores', '?')} cores{load_txt}), commit {esc(st.get('commit', '?'))}, "
            f"took {duration(st.get('seconds'))}"
            + (" after resuming from a checkpoint (the time before the interruption is not counted)"
               if st.get("resumed") else ""))


def _experiment_html(exp: Experiment, run: dict | None, kept: dict | None, atlas_dir: Path) -> str:
    out = [f'<article class="exp" id="exp-{esc(exp.name)}"><b>{esc(exp.name)}</b> — '
           f'<i>{esc(exp.claim)}</i><div class="badges">']
    if run is not None:
        what = "quick run now" if run.get("quick") else "full run now"
        out.append(_verdict_badge(run, what) + f'<span class="badge info">{duration(run.get("seconds"))}</span>')
    if kept is not None:
        out.append(_verdict_badge(kept, "full setting"))
        if not kept.get("fresh"):
            out.append('<span class="badge stale">full result is from an older version of the experiment</span>')
    else:
        out.append('<span class="badge stale">no full-setting result kept yet</span>')
    out.append("</div>")
    if kept is not None:
        out.append(f'<div class="claimline">{_stamp_line(kept)}</div>')
    # the headline numbers: this run beside the kept full setting
    runs_cols = [("quick run now" if run and run.get("quick") else "this run", run)] if run else []
    cols = runs_cols + ([("full setting", kept)] if kept else [])
    rows = {}
    for title, s in cols:
        for key, label, text in headline(exp, s.get("metrics", {})):
            rows.setdefault(key, [label]).append(text)
    if rows:
        head = "".join(f"<th>{esc(t)}</th>" for t, _ in cols)
        body = "".join(f"<tr><td>{esc(r[0])}</td>" + "".join(f'<td class="num">{esc(v)}</td>' for v in r[1:]) + "</tr>"
                       for r in rows.values())
        out.append(f'<table class="head"><tr><th>measured</th>{head}</tr>{body}</table>')
    shown_notes: set[str] = set()
    for title, s in cols:
        if s.get("notes") and s["notes"] not in shown_notes:  # the same note twice says nothing new
            shown_notes.add(s["notes"])
            out.append(f'<p class="notes"><b>{esc(title)}:</b> {esc(s["notes"])}</p>')
        if "error" in s:
            out.append(f'<div class="error">{esc(s["error"])}</div>')
    if kept is not None and kept.get("plots"):
        figs = "".join(_img(Path(kept["folder"]) / p, f"full setting: {p}") for p in kept["plots"])
        out.append(f'<div class="plots">{figs}</div>')
    if run is not None and run.get("plots"):
        figs = "".join(_img(Path(run["dir"]) / p, f"{'quick' if run.get('quick') else 'this'} run: {p}")
                       for p in run["plots"])
        if kept is None:
            out.append(f'<div class="plots">{figs}</div>')
        else:
            out.append(f'<details><summary>plots of the run made now</summary><div class="plots">{figs}</div></details>')
    for title, s in cols:
        metrics = s.get("metrics", {})
        if metrics:
            trs = "".join(f"<tr><td>{esc(str(k))}</td><td>{esc(fmt_value(v))}</td></tr>" for k, v in metrics.items())
            out.append(f'<details><summary>all {len(metrics)} metrics, {esc(title)}</summary>'
                       f'<table class="all">{trs}</table></details>')
    files = code_files(exp)
    links = []
    for kind, paths in files.items():
        for p in paths:
            href = os.path.relpath(REPO / p, atlas_dir)
            links.append(f'<a href="{esc(href)}" title="{esc(kind)}">{esc(p)}</a>')
    out.append(f'<div class="code"><b>code and tests:</b> {"".join(links)}</div></article>')
    return "".join(out)


def render(runs: list[dict], kept: dict[str, dict], atlas_dir: Path, title_note: str = "") -> str:
    """The atlas HTML from this invocation's run summaries and the kept full results (by name)."""
    runs_by_name = {s["name"]: s for s in runs}
    groups = by_place()
    states = {pid: _state(groups.get(pid, []), runs_by_name) for pid in PLACES}
    built = sum(1 for pid in PLACES if groups.get(pid))
    held = sum(1 for s in runs if s.get("held") and "error" not in s)
    fresh = sum(1 for r in kept.values() if r.get("fresh"))
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ['<!doctype html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>deepatlas — the atlas</title><style>{CSS}</style></head><body><main>",
             "<header><h1>deepatlas — the atlas</h1>",
             '<p class="lede">The map of modern deep learning and generative AI. Every place is built '
             "(readable code, the equations beside the lines), checked (tests against a reference "
             "implementation or an exact answer) and shown (an experiment that says whether the "
             "seed's claim held). Click a place on the map.</p>",
             f'<div class="stats"><span class="stat"><b>{built}</b> of {len(PLACES)} places built</span>'
             f'<span class="stat"><b>{held}</b> of {len(runs)} experiments held in the runs made now{esc(title_note)}</span>'
             f'<span class="stat"><b>{fresh}</b> of {sum(len(v) for v in groups.values())} experiments with a '
             f"current full-setting result</span></div>",
             f'<p class="lede">Made {now}, commit {esc(commit_stamp())}, on {esc(cpu_model())} '
             f"({os.cpu_count()} cores).</p></header>",
             '<nav id="map" aria-label="the map">']
    part = None
    for pid, place in PLACES.items():
        if place.part != part:
            if part is not None:
                parts.append("</div></div>")
            part = place.part
            parts.append(f'<div class="maprow"><div class="part">{esc(part)}</div><div class="cells">')
        short = _short(place.title)
        parts.append(f'<a class="cell" href="#place-{pid}" data-place="{pid}" data-state="{states[pid]}" '
                     f'title="{esc(place.title)} — {states[pid]}"><b>{pid}</b>{esc(short)}</a>')
    parts.append('</div></div><div class="legend"><span class="held">held</span><span class="failed">'
                 'did not hold / crashed</span><span class="built">built, not run here</span>'
                 '<span class="none">not built yet</span></div></nav>')
    part = None
    for pid, place in PLACES.items():
        if place.part != part:
            part = place.part
            parts.append(f"<h2>{esc(part)}</h2>")
        exps = groups.get(pid, [])
        parts.append(f'<section id="place-{pid}" class="place" data-state="{states[pid]}">'
                     f'<a class="top" href="#map">↑ map</a><h3><span class="pid">{pid}</span>{esc(place.title)}</h3>'
                     f'<div class="claimline"><b>claim to show:</b> {esc(place.claim)}</div>'
                     f'<div class="seeds"><b>seeds:</b> {esc(place.seeds)}</div>')
        if not exps:
            parts.append('<p class="notes">Not built yet.</p>')
        for exp in exps:
            parts.append(_experiment_html(exp, runs_by_name.get(exp.name), kept.get(exp.name), atlas_dir))
        parts.append("</section>")
    parts.append(f"</main><script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _ordered(only: list[str] | None) -> list[Experiment]:
    everything = sorted(load_all().values(), key=lambda e: (list(PLACES).index(e.place), e.name))
    if only is None:
        return everything
    chosen: list[Experiment] = []
    for key in only:
        chosen += [e for e in find(key) if e not in chosen]
    return chosen


def write_report(root: Path, full: bool = False, only: list[str] | None = None, echo: bool = True,
                 results_root: Path = RESULTS, keep: bool = True) -> tuple[Path, list[dict]]:
    """Run the experiments (quick unless full) and write root/atlas.html.

    With full=True each run that did not crash is kept in results_root/<place>/<name>/ (keep)."""
    summaries = []
    for exp in _ordered(only):
        if echo:
            print(f"[{exp.place}] {exp.name} ({'full' if full else 'quick'}) ...", flush=True)
        load_before = load_average()
        s = run_experiment(exp, quick=not full, root=root, echo=False)
        if full and keep and "error" not in s:
            folder = save_result(exp, s, load_before, results_root)
            if echo:
                print(f"    kept in {repo_path(folder)}", flush=True)
        if echo:
            print(f"    {'held' if s['held'] else 'NOT held'} ({duration(s['seconds'])})"
                  + (f" error: {s['error']}" if "error" in s else ""), flush=True)
        summaries.append(s)
    kept = {e.name: r for e in load_all().values() if (r := load_result(e, results_root)) is not None}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "atlas.html"
    tmp = path.with_name("atlas.html.tmp")
    tmp.write_text(render(summaries, kept, root.resolve(), "" if not full else " (full settings)"))
    os.replace(tmp, path)
    return path, summaries


def map_markdown() -> str:
    """The README's map: every place with its experiments (a test keeps the README equal to this)."""
    groups = by_place()
    lines, part = [], None
    for pid, place in PLACES.items():
        if place.part != part:
            part = place.part
            lines += ["", f"**{part}**", "", "| id | place | experiment | status |", "|---|---|---|---|"]
        exps = sorted(groups.get(pid, []), key=lambda e: e.name)  # not import order: stable anywhere
        names = ", ".join(f"`{e.name}`" for e in exps) or "—"
        status = "built · checked · shown" if exps else "not built yet"
        lines.append(f"| {pid} | {place.title} | {names} | {status} |")
    return "\n".join(lines).strip() + "\n"


def results_markdown() -> str:
    """The README's measured numbers: each experiment's headline metrics from its kept full result."""
    lines = ["| place | experiment | full-setting result | held | measured |", "|---|---|---|---|---|"]
    for exp in _ordered(None):
        kept = load_result(exp)
        if kept is None:
            lines.append(f"| {exp.place} | `{exp.name}` | no full result yet | — | — |")
            continue
        nums = "; ".join(f"{label} {text}" for _, label, text in headline(exp, kept.get("metrics", {})))
        nums = nums.replace("|", "\\|")  # a literal | would end the table cell
        st = kept.get("stamp", {})
        when = f"{st.get('date', '?')[:10]}, {duration(st.get('seconds'))}"
        lines.append(f"| {exp.place} | `{exp.name}` | {nums or '—'} | {'yes' if kept.get('held') else '**no**'} | {when} |")
    return "\n".join(lines) + "\n"
