"""A minimal reader of R's serialization format — enough to read R data packages without R.

R writes objects with `serialize()` / `saveRDS()` (src/main/serialize.c in the R sources).
The XDR ("X\\n") stream this module reads is big-endian throughout:

    header   b"X\\n"  int version (2 or 3)  int writer R version  int minimal reader version
             version 3 only:  int n  +  n bytes: the writer's native encoding ("UTF-8")
    item     int flags, then a body that depends on the type in the flags:
             flags bits 0-7   SEXP type (16 = STRSXP, 19 = VECSXP, ...)
                   bit  8     is an object (has a class)
                   bit  9     has attributes
                   bit 10     has a tag (pairlist cells)
                   bits 12-27 "levels": for CHARSXP the encoding (UTF-8 / latin1 / bytes / ASCII)
    vectors  int length (-1: a long length follows as two ints), the elements, then the
             attributes (a pairlist) when bit 9 is set
    CHARSXP  int length (-1 = NA_character_), then that many bytes (no terminator)
    pairlist (LISTSXP): [attributes] [tag] car cdr — the cdr is the next cell or NILVALUE
    REFSXP   a back-reference (1-based) to an earlier symbol/environment: index = flags >> 8,
             or the next int when that is 0

R objects are returned as plain Python values: character/logical/integer/double vectors as
lists (NA as None), lists (VECSXP) as lists, pairlists as lists of (tag, value), symbols as
RSymbol. Values that carry attributes are wrapped in RObject(value, attributes) so that a data
frame keeps its `names`, `class` and `row.names`. Anything outside that subset raises
RFormatError naming the type, so a new file shape fails loudly instead of being misread.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

# SEXP types (Rinternals.h) and the serialization-only pseudo types (serialize.c)
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, LANGSXP, CHARSXP = 0, 1, 2, 3, 4, 6, 9
LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP, VECSXP, EXPRSXP, RAWSXP = 10, 13, 14, 15, 16, 19, 20, 24
ALTREP_SXP, EMPTYENV_SXP, BASEENV_SXP = 238, 242, 241
GLOBALENV_SXP, NILVALUE_SXP, REFSXP = 253, 254, 255
TYPE_NAMES = {NILSXP: "NILSXP", SYMSXP: "SYMSXP", LISTSXP: "LISTSXP", CLOSXP: "CLOSXP",
              ENVSXP: "ENVSXP", LANGSXP: "LANGSXP", CHARSXP: "CHARSXP", LGLSXP: "LGLSXP",
              INTSXP: "INTSXP", REALSXP: "REALSXP", CPLXSXP: "CPLXSXP", STRSXP: "STRSXP",
              VECSXP: "VECSXP", EXPRSXP: "EXPRSXP", RAWSXP: "RAWSXP", ALTREP_SXP: "ALTREP_SXP"}
SUPPORTED = "NILVALUE, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP, RAWSXP, REFSXP"

IS_OBJECT, HAS_ATTR, HAS_TAG = 1 << 8, 1 << 9, 1 << 10
# CHARSXP encoding bits in "levels" (Defn.h): BYTES_MASK 1<<1, LATIN1_MASK 1<<2, UTF8_MASK 1<<3,
# ASCII_MASK 1<<6
LATIN1, UTF8, ASCII, BYTES = 1 << 2, 1 << 3, 1 << 6, 1 << 1
NA_INTEGER = -(2 ** 31)  # R's NA for integers and logicals is INT_MIN


class RFormatError(ValueError):
    """The bytes are not (the supported subset of) an R serialization."""


@dataclass(frozen=True)
class RSymbol:
    name: str


@dataclass
class RObject:
    """An R value with attributes, e.g. a data frame: value = its columns, attributes = names etc."""

    value: Any
    attributes: dict[str, Any] = field(default_factory=dict)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.refs = data, 0, []
        self.native_encoding = "UTF-8"

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RFormatError(f"truncated R serialization: need {n} bytes at offset {self.pos}, "
                               f"stream has {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: the length as two 32-bit halves
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        if n < 0:
            raise RFormatError(f"negative vector length {n} at offset {self.pos - 4}")
        return n

    def header(self) -> int:
        magic = self.take(2)
        if magic != b"X\n":
            kind = {b"A\n": "ASCII", b"B\n": "native binary"}.get(magic, repr(magic))
            raise RFormatError(f"R serialization format {kind} is not supported; only XDR (b'X\\n')")
        version = self.int()
        self.int(), self.int()  # writer R version, minimal reader R version
        if version == 3:
            self.native_encoding = self.take(self.int()).decode("ascii", "replace")
        elif version != 2:
            raise RFormatError(f"R serialization version {version}; supported: 2, 3")
        return version

    def charsxp(self, levels: int) -> str | None:
        n = self.int()
        if n == -1:
            return None  # NA_character_
        raw = self.take(n)
        if levels & LATIN1:
            return raw.decode("latin-1")
        if levels & BYTES:
            return raw.decode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "replace")  # UTF-8, ASCII, or native (UTF-8 here)

    def attributes(self) -> dict[str, Any]:
        pairs = self.item()
        if not isinstance(pairs, list):
            raise RFormatError(f"attributes must be a pairlist, got {type(pairs).__name__}")
        return {(t.name if isinstance(t, RSymbol) else str(t)): v for t, v in pairs}

    def item(self) -> Any:
        flags = self.int()
        sxp, levels = flags & 0xFF, flags >> 12
        if sxp == NILVALUE_SXP:
            return None
        if sxp == REFSXP:
            index = (flags >> 8) or self.int()
            if not 1 <= index <= len(self.refs):
                raise RFormatError(f"reference #{index} but only {len(self.refs)} defined")
            return self.refs[index - 1]
        if sxp == SYMSXP:
            sym = RSymbol(self.item() or "")  # the name is a CHARSXP
            self.refs.append(sym)
            return sym
        if sxp == LISTSXP:  # pairlist: walk the cdr chain iteratively (can be long)
            cells, attrs = [], {}
            while True:
                if flags & HAS_ATTR:
                    attrs.update(self.attributes())
                tag = self.item() if flags & HAS_TAG else None
                cells.append((tag, self.item()))
                flags = self.int()
                if flags & 0xFF == NILVALUE_SXP:
                    break
                if flags & 0xFF != LISTSXP:
                    raise RFormatError(f"pairlist ends in {TYPE_NAMES.get(flags & 0xFF, flags & 0xFF)}")
            return RObject(cells, attrs) if attrs else cells
        if sxp == CHARSXP:
            return self.charsxp(levels)
        if sxp in (LGLSXP, INTSXP):
            n = self.length()
            ints = struct.unpack(f">{n}i", self.take(4 * n))
            value: Any = [None if v == NA_INTEGER else (bool(v) if sxp == LGLSXP else v) for v in ints]
        elif sxp == REALSXP:
            n = self.length()
            value = list(struct.unpack(f">{n}d", self.take(8 * n)))
        elif sxp == RAWSXP:
            value = self.take(self.length())
        elif sxp == STRSXP:
            n = self.length()
            value = []
            for _ in range(n):
                f = self.int()
                if f & 0xFF != CHARSXP:
                    raise RFormatError(f"STRSXP element of type {f & 0xFF}, expected CHARSXP (9)")
                value.append(self.charsxp(f >> 12))
        elif sxp in (VECSXP, EXPRSXP):
            value = [self.item() for _ in range(self.length())]
        else:
            name = TYPE_NAMES.get(sxp, str(sxp))
            raise RFormatError(f"R type {name} at offset {self.pos - 4} is not supported by this "
                               f"reader; supported: {SUPPORTED}")
        if flags & HAS_ATTR:
            return RObject(value, self.attributes())
        return value


def unserialize(data: bytes) -> Any:
    """Decode one XDR R serialization (the bytes of an uncompressed .rds) into Python values."""
    reader = _Reader(bytes(data))
    reader.header()
    value = reader.item()
    if reader.pos != len(reader.data):
        raise RFormatError(f"{len(reader.data) - reader.pos} trailing bytes after the R object")
    return value


def strip(value: Any) -> Any:
    """The bare value of an RObject (attributes dropped); other values unchanged."""
    return value.value if isinstance(value, RObject) else value
