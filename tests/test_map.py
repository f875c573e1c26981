"""The map stays honest: README equals the registry, every experiment's quick run is tested."""
import re
from pathlib import Path

from deepatlas.core.places import PLACES
from deepatlas.core.registry import load_all
from deepatlas.core.report import map_markdown, results_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_readme_map_matches_registry():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- map:start -->\n(.*?)<!-- map:end -->", readme, re.S)
    assert match, "README.md lacks the <!-- map:start --> ... <!-- map:end --> block"
    assert match.group(1) == map_markdown(), "README map is stale: paste `deepatlas list --markdown`"


def test_readme_results_match_the_kept_full_results():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- results:start -->\n(.*?)<!-- results:end -->", readme, re.S)
    assert match, "README.md lacks the <!-- results:start --> ... <!-- results:end --> block"
    assert match.group(1) == results_markdown(), "README results are stale: run `make readme`"


def test_readme_speed_matches_the_kept_benchmarks():
    from deepatlas.core.results import bench_markdown

    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- speed:start -->\n(.*?)<!-- speed:end -->", readme, re.S)
    assert match, "README.md lacks the <!-- speed:start --> ... <!-- speed:end --> block"
    assert match.group(1) == bench_markdown(), "README speed table is stale: run `make readme`"


def test_every_experiment_quick_run_is_asserted_by_a_test():
    calls = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        calls |= set(re.findall(r"run_quick\(\s*[\"']([^\"']+)[\"']", path.read_text()))
    missing = [name for name in load_all() if name not in calls]
    assert not missing, f"experiments whose --quick run no test asserts: {missing}"


def test_every_experiment_names_a_real_place_and_a_valid_quick_config():
    for exp in load_all().values():
        assert exp.place in PLACES
        assert len(exp.claim) > 20, f"{exp.name}: state the claim in a sentence"
        exp.make_config(quick=True)


def test_readme_pictures_exist():
    readme = (ROOT / "README.md").read_text()
    paths = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert paths, "README shows no pictures"
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing, f"README pictures that do not exist: {missing}"
