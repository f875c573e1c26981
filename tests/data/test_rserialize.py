"""The R serialization reader against streams encoded by hand from the format (serialize.c)."""
import gzip
import struct

import pytest

from deepatlas.data.austen import janeaustenr_data_dir
from deepatlas.data.rserialize import RFormatError, RObject, RSymbol, unserialize

HAS_ATTR, HAS_TAG = 1 << 9, 1 << 10


def i32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def header(version: int = 3) -> bytes:
    out = b"X\n" + i32(version, 0x040201, 0x030500)
    return out + (i32(5) + b"UTF-8" if version == 3 else b"")


def charsxp(text: str | None, encoding: str = "utf-8") -> bytes:
    if text is None:
        return i32(9, -1)
    levels = {"utf-8": 1 << 3, "latin-1": 1 << 2, "ascii": 1 << 6}[encoding]
    raw = text.encode(encoding)
    return i32(9 | (levels << 12), len(raw)) + raw


def symbol(name: str) -> bytes:
    return i32(1) + charsxp(name, "ascii")


NIL = i32(254)


def test_vectors_attributes_and_references():
    # list(a = c("café", NA, "naïve"), b = c(1L, NA), c = c(0.5, -2), d = c(TRUE, FALSE, NA))
    # with names; attributes follow the contents, so the inner REALSXP's `names` symbol is defined
    # first and the outer list's `names` tag is a REFSXP back to it (reference #1)
    strs = i32(16, 3) + charsxp("café") + charsxp(None) + charsxp("naïve", "latin-1")
    ints = i32(13, 2, 1, -(2 ** 31))
    reals = i32(14 | HAS_ATTR, 2) + struct.pack(">2d", 0.5, -2.0)
    reals += i32(2 | HAS_TAG) + symbol("names") + i32(16, 2) + charsxp("x") + charsxp("y") + NIL
    lgls = i32(10, 3, 1, 0, -(2 ** 31))
    names = i32(16, 4) + b"".join(charsxp(n) for n in "abcd")
    stream = (header() + i32(19 | HAS_ATTR, 4) + strs + ints + reals + lgls
              + i32(2 | HAS_TAG) + i32(255 | (1 << 8)) + names + NIL)
    obj = unserialize(stream)
    # the outer names tag was resolved through the REFSXP
    assert isinstance(obj, RObject) and obj.attributes == {"names": ["a", "b", "c", "d"]}
    a, b, c, d = obj.value
    assert a == ["café", None, "naïve"]
    assert b == [1, None]
    assert c == RObject([0.5, -2.0], {"names": ["x", "y"]})
    assert d == [True, False, None]
    assert unserialize(header(2) + i32(24, 3) + b"\x00\x01\xff") == b"\x00\x01\xff"  # v2, raw


def test_pairlist_with_tags():
    stream = header() + i32(2 | HAS_TAG) + symbol("k") + i32(13, 1, 7) + i32(2) + i32(14, 0) + NIL
    assert unserialize(stream) == [(RSymbol("k"), [7]), (None, [])]


@pytest.mark.parametrize("stream, message", [
    (b"A\n" + b"\0" * 20, "ASCII"),
    (header()[:-2], "truncated"),
    (header() + i32(16, 2) + charsxp("only one"), "truncated"),
    (header() + i32(3), "CLOSXP"),
    (header() + i32(16, 1) + i32(13, 0), "expected CHARSXP"),
    (header() + i32(255 | (4 << 8)), "reference #4"),
    (header() + NIL + b"xx", "trailing"),
    (b"X\n" + i32(7, 0, 0), "version 7"),
])
def test_malformed_input_is_a_clear_error(stream, message):
    with pytest.raises(RFormatError, match=message):
        unserialize(stream)


def test_real_rds_from_janeaustenr():
    try:
        folder = janeaustenr_data_dir()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    # Rdata.rds: list(emma = "emma", ...) named by the six object names
    obj = unserialize(gzip.decompress((folder / "Rdata.rds").read_bytes()))
    assert obj.attributes["names"] == ["emma", "mansfieldpark", "northangerabbey", "persuasion",
                                       "prideprejudice", "sensesensibility"]
    assert [v for v in obj.value] == [[n] for n in obj.attributes["names"]]
