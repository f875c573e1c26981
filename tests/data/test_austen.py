"""Jane Austen's novels read from the janeaustenr .deb's R lazy-load database, without R."""
import shutil
import struct
import zlib

import pytest

from deepatlas.data.austen import (NOVELS, austen_corpus, austen_texts, janeaustenr_data_dir,
                                   read_lazyload_index, read_lazyload_record)
from deepatlas.data.rserialize import RFormatError


@pytest.fixture(scope="module")
def folder():
    try:
        return janeaustenr_data_dir()
    except FileNotFoundError as err:
        pytest.skip(str(err))


FIRST_LINES = {
    "Sense & Sensibility": "SENSE AND SENSIBILITY",
    "Pride & Prejudice": "PRIDE AND PREJUDICE",
    "Mansfield Park": "MANSFIELD PARK",
    "Emma": "EMMA",
    "Northanger Abbey": "NORTHANGER ABBEY",
    "Persuasion": "Persuasion",
}


def test_six_novels_with_known_openings_and_plausible_sizes(folder):
    texts = austen_texts()
    assert list(texts) == list(NOVELS.values()) == list(FIRST_LINES)  # publication order
    for title, text in texts.items():
        assert text.splitlines()[0] == FIRST_LINES[title]
        assert 400_000 < len(text) < 1_000_000, (title, len(text))  # novels of 80k-160k words
    assert "It is a truth universally acknowledged, that a single man in possession" in \
        texts["Pride & Prejudice"]
    # Emma has more lines than Persuasion (the package's own test) — 16 235 vs 8 328
    assert texts["Emma"].count("\n") > texts["Persuasion"].count("\n")
    corpus = austen_corpus()
    assert 3_800_000 < len(corpus) < 4_300_000
    assert corpus.startswith("SENSE AND SENSIBILITY")


def test_index_lists_offsets_that_tile_the_rdb(folder):
    variables, compressed = read_lazyload_index(folder / "Rdata.rdx")
    assert compressed == 1 and set(variables) == set(NOVELS)
    spans = sorted(variables.values())
    assert spans[0][0] == 0
    assert all(a + n == b for (a, n), (b, _) in zip(spans, spans[1:]))
    assert spans[-1][0] + spans[-1][1] == (folder / "Rdata.rdb").stat().st_size


def test_malformed_database_is_a_clear_error(folder, tmp_path):
    rdb = (folder / "Rdata.rdb").read_bytes()
    variables, _ = read_lazyload_index(folder / "Rdata.rdx")
    offset, length = variables["emma"]
    broken = bytearray(rdb)
    broken[offset + 10:offset + 20] = b"\xff" * 10  # inside the zlib stream
    with pytest.raises(RFormatError, match="cannot decompress"):
        read_lazyload_record(bytes(broken), offset, length, 1)
    with pytest.raises(RFormatError, match="runs past"):
        read_lazyload_record(rdb[:offset + 100], offset, length, 1)
    # a record whose declared size disagrees with its content
    record = struct.pack(">i", 5) + zlib.compress(b"X\n\0\0")
    with pytest.raises(RFormatError, match="header says 5"):
        read_lazyload_record(record, 0, len(record), 1)
    (tmp_path / "bad.rdx").write_bytes(b"not compressed at all")
    with pytest.raises(RFormatError, match="not a gzip/zlib"):
        read_lazyload_index(tmp_path / "bad.rdx")


def test_other_compressions_of_a_record():
    import bz2
    import lzma
    payload = b"X\n" + struct.pack(">4i", 2, 0, 0, 254)  # serialization v2 of NULL
    size = struct.pack(">i", len(payload))
    for compressed, record in [(0, payload), (1, size + zlib.compress(payload)),
                               (2, size + b"2" + bz2.compress(payload)),
                               (3, size + b"Z" + lzma.compress(payload)),
                               (3, size + b"0" + payload)]:
        assert read_lazyload_record(record, 0, len(record), compressed) is None
    with pytest.raises(RFormatError, match="compression type b'Q'"):
        read_lazyload_record(size + b"Q" + payload, 0, len(payload) + 5, 3)


def test_missing_package_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="r-cran-janeaustenr"):
        austen_texts(tmp_path)
    shutil.rmtree(tmp_path)
