"""Our own GGUF reader: the file format llama.cpp stores models in.

Layout of a GGUF file (little-endian; spec: ggml/docs/gguf.md):

    magic "GGUF" | version u32 (2 or 3) | tensor_count u64 | kv_count u64
    kv_count  × (key: string, value_type: u32, value)          ← metadata
    tensor_count × (name: string, n_dims: u32, ne[n_dims]: u64, ggml_type: u32, offset: u64)
    padding to `general.alignment` (default 32)
    tensor data: each tensor at data_start + offset (offset a multiple of the alignment)

    string = length u64 + UTF-8 bytes (no terminating zero)
    array  = element_type u32 + count u64 + count × element (arrays may nest)

`ne[0]` is the fastest-varying dimension, so a GGUF shape [576, 1536] is the numpy/torch shape
(1536, 576): we return shapes in numpy order. The tensor bytes stay in a read-only memmap until
a tensor is asked for; `GGUFFile.tensor(name)` dequantises it (deepatlas.quant.dequant).

Every count and length is checked against the bytes left in the file *before* anything is
allocated, so a corrupt or hostile file raises GGUFError instead of crashing or eating memory.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepatlas.quant.dequant import GGML_TYPES, dequantize, type_name

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 8  # nesting deeper than this is surely garbage (llama.cpp's files use 1)

# value type id -> (name, struct format, size in bytes); 8 string and 9 array are variable-size
SCALAR_TYPES: dict[int, tuple[str, str, int]] = {
    0: ("uint8", "<B", 1), 1: ("int8", "<b", 1), 2: ("uint16", "<H", 2), 3: ("int16", "<h", 2),
    4: ("uint32", "<I", 4), 5: ("int32", "<i", 4), 6: ("float32", "<f", 4), 7: ("bool", "<B", 1),
    10: ("uint64", "<Q", 8), 11: ("int64", "<q", 8), 12: ("float64", "<d", 8),
}
STRING, ARRAY = 8, 9
# the fewest bytes one element of each type can take, to bound counts before allocating
MIN_SIZE = {**{t: s for t, (_, _, s) in SCALAR_TYPES.items()}, STRING: 8, ARRAY: 12}


class GGUFError(ValueError):
    """The file is not a well-formed GGUF file; the message says what and where."""


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # numpy order: the GGUF ne[] reversed
    ggml_type: int
    offset: int  # absolute byte offset in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)


@dataclass
class GGUFFile:
    path: Path
    version: int
    alignment: int
    data_start: int
    metadata: dict[str, Any]
    tensors: dict[str, TensorInfo]
    buffer: np.ndarray = field(repr=False)  # the whole file, uint8 memmap

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes as stored (uint8, a view into the memmap)."""
        info = self._info(name)
        return self.buffer[info.offset: info.offset + info.nbytes]

    def tensor(self, name: str) -> np.ndarray:
        """The tensor dequantised to float32, in numpy shape order."""
        info = self._info(name)
        return dequantize(self.raw(name), info.ggml_type, info.shape)

    def _info(self, name: str) -> TensorInfo:
        if name not in self.tensors:
            raise KeyError(f"no tensor {name!r} in {self.path}; it has {len(self.tensors)} tensors, "
                           f"e.g. {', '.join(list(self.tensors)[:5])}")
        return self.tensors[name]


class _Cursor:
    """Reads little-endian values from the memmap, checking every read against the file size."""

    def __init__(self, buf: np.ndarray, path: Path):
        self.buf, self.pos, self.size, self.path = buf, 0, len(buf), path

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(f"{self.path}: truncated or corrupt at byte {self.pos}: {what} needs "
                            f"{n} bytes but only {self.size - self.pos} are left")

    def unpack(self, fmt: str, size: int, what: str) -> Any:
        self.need(size, what)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def count(self, what: str, min_item_size: int) -> int:
        """A u64 count of items, each at least `min_item_size` bytes: bounded by the bytes left."""
        n = self.unpack("<Q", 8, what)
        if n * min_item_size > self.size - self.pos:
            raise GGUFError(f"{self.path}: {what} = {n} at byte {self.pos - 8} is absurd: "
                            f"{n} items need ≥ {n * min_item_size} bytes, only {self.size - self.pos} left")
        return n

    def string(self, what: str) -> str:
        n = self.count(f"length of {what}", 1)
        raw = bytes(self.buf[self.pos: self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise GGUFError(f"{self.path}: {what} at byte {self.pos - n} is not valid UTF-8 ({err})") from None

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in SCALAR_TYPES:
            name, fmt, size = SCALAR_TYPES[vtype]
            v = self.unpack(fmt, size, what)
            if name == "bool":
                if v not in (0, 1):
                    raise GGUFError(f"{self.path}: {what} is a bool stored as {v}; valid: 0 or 1")
                return bool(v)
            return v
        if vtype == STRING:
            return self.string(what)
        if vtype == ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise GGUFError(f"{self.path}: {what} nests arrays deeper than {MAX_ARRAY_DEPTH}")
            etype = self.unpack("<I", 4, f"element type of {what}")
            if etype not in MIN_SIZE:
                raise GGUFError(f"{self.path}: {what} has unknown element type {etype}; "
                                f"valid: {sorted(MIN_SIZE)}")
            n = self.count(f"length of array {what}", MIN_SIZE[etype])
            if etype in SCALAR_TYPES and etype != 7:  # numbers: one vectorised read
                size = SCALAR_TYPES[etype][2]
                arr = np.frombuffer(self.buf, dtype=np.dtype(SCALAR_TYPES[etype][1]), count=n, offset=self.pos)
                self.pos += n * size
                return arr.tolist()
            return [self.value(etype, f"{what}[{i}]", depth + 1) for i in range(n)]
        raise GGUFError(f"{self.path}: {what} has unknown value type {vtype}; valid: 0..12")


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse a GGUF file's header, metadata and tensor table; tensor data stays memory-mapped."""
    path = Path(path)
    size = path.stat().st_size
    if size < 24:
        raise GGUFError(f"{path}: {size} bytes is too short for a GGUF header (24 bytes)")
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(buf, path)

    magic = bytes(buf[:4])
    if magic != MAGIC:
        raise GGUFError(f"{path}: magic is {magic!r}, expected {MAGIC!r} — not a GGUF file")
    cur.pos = 4
    version = cur.unpack("<I", 4, "version")
    if version not in (2, 3):
        hint = " (a big-endian file?)" if struct.unpack("<I", struct.pack(">I", version))[0] in (2, 3) else ""
        raise GGUFError(f"{path}: GGUF version {version} is not supported{hint}; valid: 2 or 3")
    # each tensor info takes ≥ 24 bytes (name length 8, n_dims 4, type 4, offset 8)
    n_tensors = cur.count("tensor_count", 24)
    n_kv = cur.count("kv_count", 8 + 4 + 1)  # key length, value type, smallest value

    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.string(f"key of metadata entry {i}")
        vtype = cur.unpack("<I", 4, f"value type of {key!r}")
        if key in metadata:
            raise GGUFError(f"{path}: metadata key {key!r} appears twice")
        metadata[key] = cur.value(vtype, repr(key))

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 \
            or alignment & (alignment - 1):
        raise GGUFError(f"{path}: general.alignment = {alignment!r}; valid: a positive power of two")

    infos: list[tuple[str, tuple[int, ...], int, int]] = []
    for i in range(n_tensors):
        name = cur.string(f"name of tensor {i}")
        n_dims = cur.unpack("<I", 4, f"n_dims of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GGUFError(f"{path}: tensor {name!r} has n_dims = {n_dims}; valid: 1..{MAX_DIMS}")
        ne = [cur.unpack("<Q", 8, f"dimension {d} of {name!r}") for d in range(n_dims)]
        ggml_type = cur.unpack("<I", 4, f"type of {name!r}")
        offset = cur.unpack("<Q", 8, f"offset of {name!r}")
        infos.append((name, tuple(ne), ggml_type, offset))

    # tensor data starts at the next multiple of the alignment
    data_start = -(-cur.pos // alignment) * alignment
    tensors: dict[str, TensorInfo] = {}
    for name, ne, ggml_type, offset in infos:
        if name in tensors:
            raise GGUFError(f"{path}: tensor name {name!r} appears twice")
        if ggml_type not in GGML_TYPES:
            raise GGUFError(f"{path}: tensor {name!r} has ggml type {ggml_type}, which we cannot "
                            f"read; supported: {', '.join(f'{n}={t}' for t, (n, *_) in GGML_TYPES.items())}")
        if any(d == 0 for d in ne):
            raise GGUFError(f"{path}: tensor {name!r} has a zero dimension in {list(ne)}")
        _, block_elems, block_bytes, _ = GGML_TYPES[ggml_type]
        if ne[0] % block_elems:
            raise GGUFError(f"{path}: tensor {name!r} row length {ne[0]} is not a multiple of the "
                            f"{type_name(ggml_type)} block size {block_elems}")
        n_elems = int(np.prod(ne, dtype=object))  # python ints: no overflow on absurd dims
        nbytes = n_elems // block_elems * block_bytes
        if offset % alignment:
            raise GGUFError(f"{path}: tensor {name!r} offset {offset} is not a multiple of the "
                            f"alignment {alignment}")
        if data_start + offset + nbytes > size:
            raise GGUFError(f"{path}: tensor {name!r} ({nbytes} bytes at data offset {offset}) runs "
                            f"past the end of the file ({size} bytes, data starts at {data_start})")
        tensors[name] = TensorInfo(name, tuple(reversed(ne)), ggml_type, data_start + offset, nbytes)
    return GGUFFile(path, version, alignment, data_start, metadata, tensors, buf)
