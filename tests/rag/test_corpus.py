import pytest

from deepatlas.rag.corpus import CorpusError, austen_documents, bible_documents, corpus_checksum, folder_documents


def test_folder_corpus_skips_binary_and_empty(tmp_path):
    (tmp_path / "a.txt").write_text("Alpha text.")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# Beta\nmore")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "empty.md").write_text("  \n")
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF")
    notes = []
    docs = folder_documents(tmp_path, warn=notes.append)
    assert [d.doc_id for d in docs] == ["a.txt", "sub/b.md"]
    assert len(notes) == 3 and any("blob.txt" in n and "binary" in n for n in notes)


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        folder_documents(tmp_path / "missing")
    with pytest.raises(CorpusError, match="no .txt or .md"):
        folder_documents(tmp_path)
    (tmp_path / "x.txt").write_bytes(b"\x00")
    with pytest.raises(CorpusError, match="binary or empty"):
        folder_documents(tmp_path, warn=lambda m: None)


def test_builtin_corpora_by_chapter():
    pp = austen_documents(("Pride & Prejudice",))
    assert len(pp) == 61 and pp[0].text.startswith("It is a truth universally acknowledged")
    ge = bible_documents(("Ge",))
    assert len(ge) == 50 and ge[0].where == "Ge, chapter 1" and ge[0].text.startswith("In the beginning")
    assert corpus_checksum(ge) != corpus_checksum(ge[:-1])
    with pytest.raises(CorpusError, match="valid"):
        austen_documents(("Ulysses",))
