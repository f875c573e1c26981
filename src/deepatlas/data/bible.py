"""The King James Bible (31 102 verses, ~4.4 MB) from the `bible` command of Debian's bible-kjv.

`bible -f gen1:1-rev22:21` prints one verse per line as "<Book><chapter>:<verse> <text>"
("Ge1:1 In the beginning ..."); the output is cached as a text file so later calls need no command.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from deepatlas.data.cache import cache_dir

BIBLE_COMMAND = ["bible", "-f", "gen1:1-rev22:21"]
N_VERSES = 31102
# a verse line starts with its reference: optional book number, book abbreviation, chapter:verse
VERSE = re.compile(r"^([1-3]?[A-Z][A-Za-z]*\d+:\d+) (.*)$")


def bible_file(path: Path | None = None) -> Path:
    """The cached output of `bible -f gen1:1-rev22:21` (default $DEEPATLAS_CACHE/bible/kjv.txt),
    created on first use."""
    path = Path(path) if path is not None else cache_dir("bible") / "kjv.txt"
    if path.is_file():
        return path
    if shutil.which(BIBLE_COMMAND[0]) is None:
        raise FileNotFoundError("the `bible` command is missing: apt-get install bible-kjv "
                                f"(deepatlas runs `{' '.join(BIBLE_COMMAND)}` and caches it in {path})")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # COLUMNS would wrap the lines
    out = subprocess.run(BIBLE_COMMAND, capture_output=True, text=True, check=True, env=env).stdout
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(out)
    os.replace(tmp, path)  # atomic: a crash never leaves half a Bible in the cache
    return path


def bible_verses(path: Path | None = None) -> list[tuple[str, str]]:
    """[(reference, text)] for all 31 102 verses, e.g. ("Ge1:1", "In the beginning God ...")."""
    verses: list[tuple[str, str]] = []
    for line in bible_file(path).read_text().splitlines():
        match = VERSE.match(line)
        if match:
            verses.append((match.group(1), match.group(2)))
        elif line.strip() and verses:  # a wrapped continuation line
            ref, text = verses[-1]
            verses[-1] = (ref, text + " " + line.strip())
    if len(verses) != N_VERSES:
        raise ValueError(f"{bible_file(path)}: {len(verses)} verses, expected {N_VERSES}; "
                         "delete the file to regenerate it")
    return verses


def bible_text(with_references: bool = False, path: Path | None = None) -> str:
    """The whole Bible as text, one verse per line (optionally prefixed by its reference)."""
    return "".join((f"{ref} {text}\n" if with_references else text + "\n")
                   for ref, text in bible_verses(path))
