"""The atlas page: readable numbers, headline metrics, states, links to real files."""
import re
from pathlib import Path

import pytest

from deepatlas.core.places import PLACES
from deepatlas.core.registry import Experiment, find
from deepatlas.core.report import code_files, fmt_value, headline, render, results_markdown
from deepatlas.core.results import REPO, load_result, save_result, source_hash


def test_numbers_are_rounded_for_people():
    assert fmt_value(0.9611111111111111) == "0.9611"
    assert fmt_value(4.440892098500626e-16) == "4.44e-16"
    assert fmt_value(True) == "yes" and fmt_value(12) == "12" and fmt_value(123456) == "123,456"
    assert fmt_value([0.12345, 2]) == "[0.1235, 2]" and fmt_value(None) == "—"
    assert fmt_value(float("nan")) == "nan"


def test_headline_formats_and_missing_keys():
    exp = Experiment("F1", "x", "a claim long enough to read", object, lambda c, r: None,
                     headline={"acc": "{:.1%}", "diff": ("max diff", "{:.1e}"), "ok": ("equal", "{}"),
                               "gone": "{:.2f}"})
    rows = headline(exp, {"acc": 0.9611, "diff": 4.4e-16, "ok": True})
    assert rows == [("acc", "acc", "96.1%"), ("diff", "max diff", "4.4e-16"), ("ok", "equal", "yes"),
                    ("gone", "gone", "—")]


def test_headline_format_is_checked_at_registration():
    from deepatlas.core.registry import experiment

    with pytest.raises(ValueError, match="format"):
        experiment("F1", "bad-headline", "claim", object, headline={"acc": 3})


def test_code_links_name_real_files():
    files = code_files(find("gpt-pretrain")[0])
    assert files["experiment"] == ["src/deepatlas/experiments/l2_gpt.py"]
    assert "src/deepatlas/models/gpt.py" in files["code"]
    assert "tests/experiments/test_l2.py" in files["tests"] and "tests/models/test_gpt.py" in files["tests"]
    for paths in files.values():
        assert all((REPO / p).is_file() for p in paths)


def fake_run(exp, tmp_path: Path, held=True, quick=True, **extra) -> dict:
    d = tmp_path / exp.name
    d.mkdir(parents=True, exist_ok=True)
    return {"place": exp.place, "name": exp.name, "claim": exp.claim, "quick": quick, "held": held,
            "metrics": {"max_grad_diff": 4.4e-16, "test_accuracy": 0.9611}, "notes": "n", "seconds": 1.5,
            "plots": [], "dir": str(d), **extra}


def test_page_states_sections_and_full_results(tmp_path):
    f1, f3 = find("autograd-mlp")[0], find("optimizer-zigzag")[0]
    runs = [fake_run(f1, tmp_path), fake_run(f3, tmp_path, held=False)]
    page = render(runs, {}, tmp_path)
    cells = re.findall(r'<a class="cell" href="#place-(\w+)" data-place="(\w+)" data-state="(\w+)"', page)
    assert len(cells) == len(PLACES) and all(a == b for a, b, _ in cells)
    state = {p: s for p, _, s in cells}
    assert state["F1"] == "held" and state["F3"] == "failed" and state["F2"] == "built"
    assert state["S8"] == "none"
    for pid in PLACES:
        assert f'<section id="place-{pid}" class="place" data-state="{state[pid]}">' in page
    assert "96.1%" in page and "4.4e-16" in page and "0.9611111" not in page

    # a kept full result shows beside the quick run, stamped; a stale one says so
    root = tmp_path / "results"
    save_result(f1, fake_run(f1, tmp_path, quick=False), [0.5, 0.4, 0.3], root)
    kept = load_result(f1, root)
    assert kept["fresh"] and kept["stamp"]["experiment_sha256"] == source_hash(f1)
    assert kept["stamp"]["machine"]["cores"] >= 1 and kept["stamp"]["load_average_before"] == [0.5, 0.4, 0.3]
    page = render(runs, {f1.name: kept}, tmp_path)
    assert "full setting, measured on" in page and "older version" not in page
    kept["fresh"] = False
    assert "older version of the experiment" in render(runs, {f1.name: kept}, tmp_path)


def test_save_result_refuses_quick_or_crashed_runs(tmp_path):
    f1 = find("autograd-mlp")[0]
    with pytest.raises(ValueError, match="quick"):
        save_result(f1, fake_run(f1, tmp_path, quick=True), None, tmp_path)
    with pytest.raises(ValueError, match="failed"):
        save_result(f1, fake_run(f1, tmp_path, quick=False, error="boom"), None, tmp_path)


def test_results_markdown_lists_every_experiment():
    table = results_markdown()
    assert "`gpt-pretrain`" in table and table.startswith("| place |")
