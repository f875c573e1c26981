"""Every experiment keeps a full-setting result measured with the experiment file checked in.

`deepatlas report --full --only NAME` writes results/<place>/<name>/; the atlas and README show
those numbers, so they must exist and come from the current version of the experiment."""
import json

import pytest

from deepatlas.core.registry import load_all
from deepatlas.core.results import RESULTS, load_result, source_hash

EXPERIMENTS = sorted(load_all().values(), key=lambda e: (e.place, e.name))


@pytest.mark.parametrize("exp", EXPERIMENTS, ids=[e.name for e in EXPERIMENTS])
def test_full_result_exists_and_is_current(exp):
    kept = load_result(exp)
    where = RESULTS / exp.place / exp.name
    fix = f"run `deepatlas report --full --only {exp.name}` and commit {where.relative_to(RESULTS.parent)}/"
    assert kept is not None, f"{exp.name} has no full-setting result: {fix}"
    assert kept["stamp"]["experiment_sha256"] == source_hash(exp), (
        f"{exp.name}'s full result was measured with an older {kept['stamp']['experiment_file']}: {fix}")
    assert kept["quick"] is False and "error" not in kept
    assert kept["claim"] == exp.claim
    for plot in kept["plots"]:
        assert (where / plot).is_file(), f"{where}/{plot} is listed but missing"
    for key in exp.headline:
        assert key in kept["metrics"], f"headline metric {key!r} of {exp.name} is not in its full result"


def test_no_result_without_an_experiment():
    names = {(e.place, e.name) for e in EXPERIMENTS}
    for path in RESULTS.glob("*/*/result.json"):
        place, name = path.parent.parent.name, path.parent.name
        assert (place, name) in names, f"{path} belongs to no registered experiment"
        assert json.loads(path.read_text())["name"] == name
