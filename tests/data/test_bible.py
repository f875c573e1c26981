import shutil

import pytest

from deepatlas.data import bible


@pytest.fixture(scope="module")
def kjv_path(tmp_path_factory):
    if shutil.which("bible") is None:
        pytest.skip("the `bible` command is missing (apt-get install bible-kjv)")
    return bible.bible_file(tmp_path_factory.mktemp("bible") / "kjv.txt")


def test_all_verses_from_genesis_to_revelation(kjv_path):
    verses = bible.bible_verses(kjv_path)
    assert len(verses) == 31102
    assert verses[0] == ("Ge1:1", "In the beginning God created the heaven and the earth.")
    assert verses[-1] == ("Rev22:21", "The grace of our Lord Jesus Christ be with you all. Amen.")
    text = bible.bible_text(path=kjv_path)
    assert text.startswith("In the beginning God") and 4_000_000 < len(text) < 4_300_000


def test_wrapped_lines_are_joined(tmp_path, kjv_path):
    wrapped = tmp_path / "wrapped.txt"
    lines = kjv_path.read_text().splitlines()
    lines[0:1] = ["Ge1:1 In the beginning God created the", "heaven and the earth."]
    wrapped.write_text("\n".join(lines) + "\n")
    assert bible.bible_verses(wrapped)[0][1] == "In the beginning God created the heaven and the earth."


def test_missing_command_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(bible.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install bible-kjv"):
        bible.bible_file(tmp_path / "kjv.txt")
