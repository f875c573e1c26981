"""Character tokenizer: exact ids, lossless round trip, errors that name the character."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from deepatlas.text.char import CharTokenizer


def test_vocab_sorted_and_exact_ids():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.encode("hold") == [3, 5, 4, 1]
    assert tok.decode([3, 5, 4, 1]) == "hold"


@given(st.text(min_size=1))
def test_round_trip_any_unicode(text):
    tok = CharTokenizer.from_text(text)
    assert len(tok) == len(set(text))
    assert tok.decode(tok.encode(text)) == text


def test_errors_name_the_bad_value():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"^character 'Z' \(U\+005A\) at position 1"):
        tok.encode("aZb")
    with pytest.raises(KeyError):  # also a KeyError, for code that catches lookups
        tok.encode("Z")
    with pytest.raises(ValueError, match="id 3 is outside the vocabulary 0..2"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="twice"):
        CharTokenizer(["a", "a"])
