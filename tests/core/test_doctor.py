"""`deepatlas doctor`: finds what is there where the loaders look, names the install command of what is not.

Missing cases are made by pointing the loaders' own locations ($DEEPATLAS_CACHE, Fashion-MNIST's
system folder, PATH, the Chromium path) at empty temporary folders; present cases by putting the
files the loaders look for there."""
from __future__ import annotations

import importlib.metadata
import json

import pytest

from deepatlas import cli
from deepatlas.core import doctor
from deepatlas.data import fashion_mnist
from deepatlas.data.austen import DATA_SUBDIR


def by_name(found: list[doctor.Found]) -> dict[str, doctor.Found]:
    return {f.name: f for f in found}


@pytest.fixture
def bare(tmp_path, monkeypatch):
    """A machine without the system data: empty cache, no Fashion-MNIST folder, nothing on PATH."""
    monkeypatch.setenv("DEEPATLAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "no-fashion-mnist")
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(doctor, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setattr(doctor, "POCKETSPHINX_TEST_DATA", tmp_path / "no-pocketsphinx")
    return tmp_path


def test_missing_things_are_named_with_their_install_command(bare):
    found = by_name(doctor.examine())
    expected = {
        "Fashion-MNIST": "apt-get install -y dataset-fashion-mnist",
        "King James Bible (bible)": "apt-get install -y bible-kjv",
        "espeak-ng": "apt-get install -y espeak-ng",
        "pocketsphinx-testdata": "apt-get install -y pocketsphinx-testdata",
        "chromium": "apt-get install -y chromium",
    }
    for name, install in expected.items():
        assert not found[name].present, found[name]
        assert found[name].install == install
        assert found[name].where == "not found"
    austen = found["Jane Austen (janeaustenr)"]
    assert not austen.present
    # the command unpacks into the cache the loader reads (here the temporary one)
    assert austen.install.endswith(f"dpkg -x r-cran-janeaustenr_*.deb {bare / 'cache' / 'janeaustenr'}")
    assert not doctor.core_ok(list(found.values()))


def test_data_present_where_the_loaders_look(bare):
    cache = bare / "cache"
    (cache / "fashion-mnist").mkdir(parents=True)
    for name in fashion_mnist.FILES.values():
        (cache / "fashion-mnist" / name).write_bytes(b"")
    (cache / "janeaustenr" / DATA_SUBDIR).mkdir(parents=True)
    for name in ("Rdata.rdx", "Rdata.rdb"):
        (cache / "janeaustenr" / DATA_SUBDIR / name).write_bytes(b"")
    (cache / "bible").mkdir()
    (cache / "bible" / "kjv.txt").write_text("Ge1:1 In the beginning God created the heaven and the earth.\n")
    found = by_name(doctor.examine())
    assert found["Fashion-MNIST"].where == str(cache / "fashion-mnist")
    assert found["Jane Austen (janeaustenr)"].where == str(cache / "janeaustenr" / DATA_SUBDIR)
    assert found["King James Bible (bible)"].where == str(cache / "bible" / "kjv.txt")
    # three of four Fashion-MNIST files is not the data set
    (cache / "fashion-mnist" / fashion_mnist.FILES[("test", "labels")]).unlink()
    assert not by_name(doctor.examine())["Fashion-MNIST"].present


def test_libraries_found_without_import_and_versioned():
    found = by_name(doctor.examine())
    assert found["torch"].present and found["torch"].where == f"torch {importlib.metadata.version('torch')}"
    assert found["sklearn digits"].present and found["sklearn digits"].where.endswith("digits.csv.gz")
    assert doctor.module_location("deepatlas_no_such_module") is None
    assert doctor.module_location("deepatlas_no_such_package.sub") is None  # parent missing: no crash
    assert doctor._library("deepatlas_no_such_module", "no-such-dist")() is None


def test_install_commands_follow_pyproject_extras():
    assert doctor.pip_command("transformers") == "make install"         # the reference extra
    assert doctor.pip_command("matplotlib") == "make install"           # a runtime dependency
    assert doctor.pip_command("pytest") == "make install-test"          # the test extra
    assert doctor.pip_command("playwright") == "make install-test"
    # not in an extra: pip, and --no-deps where pip would otherwise replace the pinned torch
    assert doctor.pip_command("deepatlas-not-listed", needs_torch=True) == "pip install --no-deps deepatlas-not-listed"
    assert doctor.pip_command("deepatlas-not-listed") == "pip install deepatlas-not-listed"
    assert doctor.pip_command("Jinja2") == doctor.pip_command("jinja2")  # names normalised


def _fake_checks(core_present: bool) -> list[doctor.Check]:
    return [doctor.Check("data", "core thing", True, "apt-get install -y core-thing",
                         (lambda: "/here") if core_present else (lambda: None)),
            doctor.Check("speech", "optional thing", False, "apt-get install -y optional-thing", lambda: None),
            doctor.Check("reference", "broken finder", False, "pip install broken",
                         lambda: 1 / 0)]


@pytest.mark.parametrize("core_present", [True, False])
def test_exit_code_and_json(monkeypatch, capsys, core_present):
    monkeypatch.setattr(doctor, "checks", lambda: _fake_checks(core_present))
    rc = cli.main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == (0 if core_present else 1) and report["ok"] is core_present
    rows = {r["name"]: r for r in report["checks"]}
    assert rows["core thing"]["present"] is core_present and rows["core thing"]["core"] is True
    assert rows["optional thing"] == {"group": "speech", "name": "optional thing", "core": False, "present": False,
                                      "where": "not found", "install": "apt-get install -y optional-thing",
                                      "used_by": ""}
    # a finder that fails is reported as missing with the reason, never a traceback
    assert not rows["broken finder"]["present"]
    assert rows["broken finder"]["where"] == "cannot check: ZeroDivisionError: division by zero"


def test_table_marks_core_missing_in_capitals(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "checks", lambda: _fake_checks(core_present=False))
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "  MISSING core thing  install: apt-get install -y core-thing" in out
    assert "  missing optional thing  install: apt-get install -y optional-thing" in out
    assert out.rstrip().endswith("0 of 3 present; core needs missing: core thing")


def test_extras_from_installed_metadata_without_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "REPO", tmp_path)  # no pyproject.toml here: a wheel install
    doctor.extras.cache_clear()
    try:
        listed = doctor.extras()
    finally:
        doctor.extras.cache_clear()
    assert listed["torch"] == "runtime" and listed["transformers"] == "reference" and listed["pytest"] == "test"
