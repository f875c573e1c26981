"""Every `deepatlas …` command in README.md's code blocks parses, names real experiments and keys,
and the cheap ones (list, --help, doctor) run and exit 0 — so a wrong example fails CI."""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from deepatlas.cli import build_parser
from deepatlas.core.registry import find

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PREFIXES = (["deepatlas"], ["python", "-m", "deepatlas"], ["python3", "-m", "deepatlas"])
CHEAP = (["list"], ["list", "--markdown"], ["doctor"], ["doctor", "--json"])  # seconds each, no training


def code_blocks(text: str) -> list[str]:
    """The bodies of the fenced (```) code blocks of a Markdown text."""
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def readme_commands(text: str) -> list[list[str]]:
    """argv (after `deepatlas`) of each command line in the code blocks; `$ ` prompts and
    `# comments` dropped."""
    commands = []
    for block in code_blocks(text):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # unbalanced quotes: prose, not a command line
                continue
            for prefix in PREFIXES:
                if words[:len(prefix)] == prefix:
                    commands.append(words[len(prefix):])
    return commands


COMMANDS = readme_commands(README.read_text())


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse as `deepatlas.cli.main` does (overrides may follow options), failing the test
    with argparse's message instead of exiting."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as exit_:
        if exit_.code == 0:  # --help
            return argparse.Namespace(command="help")
        pytest.fail(f"`deepatlas {shlex.join(argv)}` does not parse (argparse exit {exit_.code})")
    if extra and args.command == "run" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        pytest.fail(f"`deepatlas {shlex.join(argv)}`: unrecognized arguments {extra}")
    return args


def test_extractor_finds_the_examples():
    assert readme_commands("text\n```sh\n$ deepatlas run F3 --quick  # a comment\npython -m deepatlas list\n"
                           "make demo\n```\ndeepatlas outside a block\n") == [["run", "F3", "--quick"], ["list"]]
    # the README's own examples: enough of them, and the ones a newcomer starts with
    assert len(COMMANDS) >= 8, COMMANDS
    for needed in (["list"], ["doctor"]):
        assert needed in COMMANDS, f"README.md shows no `deepatlas {' '.join(needed)}`"


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_readme_command_parses(argv, capsys):
    args = parse(argv)
    capsys.readouterr()  # --help's text
    if args.command == "run":
        exps = find(args.name)  # UnknownExperiment names the typo
        for exp in exps:  # every key=value is a real key of a real type (ConfigError otherwise)
            exp.make_config(args.quick, args.overrides)


def test_make_targets_in_readme_exist():
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    used = {m for block in code_blocks(README.read_text())
            for m in re.findall(r"^\s*(?:\$ )?make ([\w-]+)", block, flags=re.M)}
    assert used, "README.md's code blocks show no make target"
    assert used <= targets, f"README.md uses make targets the Makefile lacks: {sorted(used - targets)}"


# the cheap ones the README shows, and the two its prose names (`deepatlas list --markdown`, help)
CHEAP_IN_README = [c for c in COMMANDS if c in CHEAP or "--help" in c or "-h" in c]
CHEAP_IN_README += [c for c in (["--help"], ["list", "--markdown"]) if c not in CHEAP_IN_README]


@pytest.mark.parametrize("argv", CHEAP_IN_README, ids=[" ".join(c) for c in CHEAP_IN_README])
def test_cheap_readme_command_runs(argv, tmp_path):
    expected = 0
    if argv[0] == "doctor":  # exit 1 is right on a machine that lacks a core need; say which
        from deepatlas.core.doctor import core_ok, examine

        found = examine()
        expected = 0 if core_ok(found) else 1
    done = subprocess.run([sys.executable, "-m", "deepatlas", *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == expected, (
        f"`deepatlas {shlex.join(argv)}` exited {done.returncode} (expected {expected}):\n"
        f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    assert done.stdout.strip(), f"`deepatlas {shlex.join(argv)}` printed nothing"
