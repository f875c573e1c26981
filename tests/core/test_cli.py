"""The `deepatlas` command: run, typos, bad keys, registry look-ups, the atlas report.

A tiny fake experiment is registered for these tests (and removed after), and the registry's
load_all is kept from importing the real experiment modules, so these checks of the command
line take milliseconds and do not depend on the state of other places."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from deepatlas import cli
from deepatlas.core import registry, report
from deepatlas.core.registry import EXPERIMENTS, UnknownExperiment, Verdict, experiment, find
from deepatlas.core.train import TrainConfig

PLACE, NAME = "M4", "core-test-fake-mean"


@dataclass
class FakeConfig:
    n: int = 1000
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=3))


@pytest.fixture
def fake(monkeypatch):
    """Register a fake experiment whose claim is measured: the mean of 0..n-1 is (n-1)/2."""
    monkeypatch.setattr(registry, "load_all", lambda: EXPERIMENTS)
    monkeypatch.setattr(report, "load_all", lambda: EXPERIMENTS)

    @experiment(PLACE, NAME, claim="the mean of the integers 0..n-1 is (n-1)/2, measured by summing them",
                config=FakeConfig, quick={"n": 10})
    def fake_mean(cfg: FakeConfig, run) -> Verdict:
        mean = sum(range(cfg.n)) / cfg.n
        run.log(step=0, mean=mean)
        return Verdict(held=mean == (cfg.n - 1) / 2, metrics={"mean": mean, "n": cfg.n})

    yield EXPERIMENTS[NAME]
    del EXPERIMENTS[NAME]


def test_find_by_name_and_place_id(fake):
    assert find(NAME) == [fake]
    assert fake in find(PLACE) and fake in find(PLACE.lower())
    with pytest.raises(UnknownExperiment, match="Did you mean 'core-test-fake-mean'"):
        find("core-test-fake-maen")
    with pytest.raises(UnknownExperiment, match="no experiment or place named 'zzzz'"):
        find("zzzz")


def test_run_quick_with_override(fake, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", NAME, "n=7", "train.lr=0.1", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean = 3.0" in printed and "claim HELD" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["held"] and summary["config"]["n"] == 7 and summary["config"]["train"]["lr"] == 0.1
    assert json.loads((out / "metrics.jsonl").read_text()) == {"step": 0, "mean": 3.0}


def test_run_typo_exits_2_with_suggestion(fake, tmp_path, capsys):
    assert cli.main(["run", "core-test-fake-maen", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'core-test-fake-mean'" in err
    assert not any(tmp_path.iterdir())  # nothing ran


def test_run_unknown_key_exits_2_naming_valid_keys(fake, tmp_path, capsys):
    assert cli.main(["run", NAME, "sed=3", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'sed'" in err and "Did you mean 'seed'" in err
    assert "Valid keys: n, seed, train.steps, train.lr" in err
    assert not any(tmp_path.iterdir())


def test_nested_unknown_key_is_named_in_full_with_suggestion(fake, tmp_path, capsys):
    assert cli.main(["run", NAME, "train.lrr=3", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'train.lrr'" in err and "Did you mean 'train.lr'" in err


def test_overrides_after_options(fake, tmp_path):
    assert cli.main(["run", NAME, "--quick", "n=7", "--out", str(tmp_path / "r")]) == 0


def test_run_bad_value_exits_2(fake, tmp_path, capsys):
    assert cli.main(["run", NAME, "n=many", "--root", str(tmp_path)]) == 2
    assert "expected a value of type int" in capsys.readouterr().err


def test_report_writes_atlas(fake, tmp_path, capsys):
    assert cli.main(["report", "--root", str(tmp_path), "--only", NAME]) == 0
    assert "1/1 claims held" in capsys.readouterr().out
    page = (tmp_path / "atlas.html").read_text()
    assert NAME in page and "the mean of the integers" in page and "not built yet" in page
