import pytest

from deepatlas.rag.chunking import chunk_documents, fixed_windows, split_text
from deepatlas.rag.corpus import Document


def test_fixed_windows_overlap_and_cover():
    words = [str(i) for i in range(25)]
    wins = fixed_windows(words, 10, 3)
    assert [w[0] for w in wins] == ["0", "7", "14", "21"] or [w[0] for w in wins] == ["0", "7", "14"]
    assert all(a[-3:] == b[:3] for a, b in zip(wins, wins[1:]))          # 3 shared words
    assert set(sum(wins, [])) == set(words)                             # every word in some window
    with pytest.raises(ValueError, match="overlap"):
        fixed_windows(words, 5, 5)


def test_sentence_and_paragraph_packing():
    text = "One two three. Four five\nsix! Still.\n\nSeven eight? Nine."   # a wrapped line inside a sentence
    assert split_text(text, "sentence", 3) == ["One two three.", "Four five six!", "Still. Seven eight?", "Nine."]
    assert split_text(text, "sentence", 4) == ["One two three.", "Four five six! Still.", "Seven eight? Nine."]
    assert split_text(text, "paragraph", 100) == ["One two three. Four five six! Still. Seven eight? Nine."]
    assert split_text(text, "paragraph", 2) == ["One two three. Four five six! Still.", "Seven eight? Nine."]
    with pytest.raises(ValueError, match="valid"):
        split_text(text, "words")


def test_chunks_know_their_book_and_chapter():
    docs = [Document("a/1", "A", "1", "x " * 30), Document("b", "b.md", "", "y " * 5)]
    chunks = chunk_documents(docs, "fixed", 20, 5)
    assert [c.chunk_id for c in chunks] == list(range(len(chunks)))
    assert chunks[0].where == "A, chapter 1" and chunks[-1].where == "b.md"
