"""Jane Austen's six novels, read from the Debian package r-cran-janeaustenr — without R.

scripts/setup_system.sh unpacks the .deb (`dpkg -x`) into $DEEPATLAS_CACHE/janeaustenr. The novels
sit in R's lazy-load database of the package's data:

    usr/lib/R/site-library/janeaustenr/data/Rdata.rdx   gzip'd R serialization (an .rds) of
        list(variables = list(<object name> = c(offset, length), ...),
             references = list(), compressed = TRUE | 2 | 3)
    usr/lib/R/site-library/janeaustenr/data/Rdata.rdb   the records, back to back; the record of an
        object is rdb[offset : offset + length] =
            int32 big-endian uncompressed length  +  zlib stream        (compressed = TRUE/1)
            int32 length  +  1 type byte ('0' none, '1' zlib, '2' bzip2, 'Z' xz) + data   (2, 3)
            the bare serialization                                          (compressed = FALSE)
        and the uncompressed bytes are an R serialization (deepatlas.data.rserialize).

In janeaustenr 1.0.0 each novel is a character vector, one element per line of the Project
Gutenberg text.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from functools import lru_cache
from pathlib import Path

from deepatlas.data.cache import cache_dir
from deepatlas.data.rserialize import RFormatError, RObject, strip, unserialize

DATA_SUBDIR = Path("usr/lib/R/site-library/janeaustenr/data")
# R object name -> title, in publication order (the order janeaustenr::austen_books() uses)
NOVELS = {
    "sensesensibility": "Sense & Sensibility",
    "prideprejudice": "Pride & Prejudice",
    "mansfieldpark": "Mansfield Park",
    "emma": "Emma",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
}
INSTALL_HINT = ("run `bash scripts/setup_system.sh` (it downloads r-cran-janeaustenr and unpacks it "
                "with dpkg -x into $DEEPATLAS_CACHE/janeaustenr), or by hand: "
                "apt-get download r-cran-janeaustenr && dpkg -x r-cran-janeaustenr_*.deb "
                "$DEEPATLAS_CACHE/janeaustenr")


def janeaustenr_data_dir(root: Path | None = None) -> Path:
    """The package's data/ folder under `root` (default $DEEPATLAS_CACHE/janeaustenr)."""
    root = Path(root) if root is not None else cache_dir("janeaustenr")
    folder = root / DATA_SUBDIR
    if not (folder / "Rdata.rdx").is_file() or not (folder / "Rdata.rdb").is_file():
        raise FileNotFoundError(f"Jane Austen data not found: no Rdata.rdx/Rdata.rdb in {folder}; "
                                + INSTALL_HINT)
    return folder


def _named(obj: object, what: str) -> dict:
    if not isinstance(obj, RObject) or "names" not in obj.attributes:
        raise RFormatError(f"{what} is not a named R list")
    return dict(zip(obj.attributes["names"], obj.value))


def read_lazyload_index(rdx: Path) -> tuple[dict[str, tuple[int, int]], int]:
    """Parse an .rdx: {object name: (offset, length)} and the compression code (1, 2 or 3)."""
    raw = Path(rdx).read_bytes()
    try:
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else zlib.decompress(raw)
    except (OSError, zlib.error, EOFError) as err:
        raise RFormatError(f"{rdx}: not a gzip/zlib-compressed R index ({err})") from err
    index = _named(unserialize(raw), f"{rdx}")
    if "variables" not in index:
        raise RFormatError(f"{rdx}: index has no 'variables' entry (has {sorted(index)})")
    variables = {name: (int(strip(v)[0]), int(strip(v)[1])) for name, v in _named(
        index["variables"], "variables").items()}
    compressed = strip(index.get("compressed", [True]))[0]
    return variables, 1 if compressed is True else int(compressed)


def read_lazyload_record(rdb_bytes: bytes, offset: int, length: int, compressed: int) -> object:
    """Decompress and unserialize one record of an .rdb (see the module docstring)."""
    record = rdb_bytes[offset:offset + length]
    if len(record) != length or length < 5:
        raise RFormatError(f"record at offset {offset} with length {length} runs past the .rdb "
                           f"({len(rdb_bytes)} bytes)")
    if compressed == 0:  # compressed = FALSE: the record is the bare serialization
        return unserialize(record)
    size = struct.unpack(">i", record[:4])[0]
    body, kind = record[4:], b"1"
    if compressed in (2, 3):
        kind, body = record[4:5], record[5:]
    try:
        raw = {b"0": lambda b: b, b"1": zlib.decompress, b"2": bz2.decompress,
               b"Z": lzma.decompress}[kind](body)
    except KeyError:
        raise RFormatError(f"unknown record compression type {kind!r}; valid: b'0', b'1', b'2', b'Z'")
    except (zlib.error, OSError, lzma.LZMAError, ValueError) as err:
        raise RFormatError(f"record at offset {offset}: cannot decompress ({err})") from err
    if len(raw) != size:
        raise RFormatError(f"record at offset {offset}: {len(raw)} bytes, header says {size}")
    return unserialize(raw)


@lru_cache(maxsize=2)
def _texts(folder: Path) -> dict[str, str]:
    variables, compressed = read_lazyload_index(folder / "Rdata.rdx")
    missing = [name for name in NOVELS if name not in variables]
    if missing:
        raise RFormatError(f"{folder}: objects {missing} missing; found {sorted(variables)}")
    rdb = (folder / "Rdata.rdb").read_bytes()
    texts = {}
    for name, title in NOVELS.items():
        lines = strip(read_lazyload_record(rdb, *variables[name], compressed))
        if not isinstance(lines, list) or not all(isinstance(s, (str, type(None))) for s in lines):
            raise RFormatError(f"{name}: expected a character vector of lines")
        texts[title] = "\n".join(s or "" for s in lines) + "\n"
    return texts


def austen_texts(root: Path | None = None) -> dict[str, str]:
    """{title: full text} of the six novels, in publication order (lines joined with newlines)."""
    return dict(_texts(janeaustenr_data_dir(root)))


def austen_corpus(root: Path | None = None) -> str:
    """All six novels as one string (~4 MB), separated by blank lines."""
    return "\n\n".join(austen_texts(root).values())
