"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70 000 28×28 grey images of clothes, 10 classes.

Where the files come from, in order:
  1. /usr/share/datasets/fashion-mnist          (Debian package `dataset-fashion-mnist`)
  2. $DEEPATLAS_CACHE/fashion-mnist             (default ~/.cache/deepatlas/fashion-mnist)
  3. a download into (2) from $DEEPATLAS_FASHION_MNIST_URL (default: Zalando's GitHub repository),
     each file checked against a SHA-256 hard-coded below and written atomically.

The files are gzip'd IDX files (LeCun's MNIST format), big-endian:
    bytes 0-1  zero    byte 2  element type (0x08 = unsigned byte)    byte 3  number of dims d
    then d int32 sizes, then prod(sizes) elements, row-major.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from deepatlas.data.cache import ChecksumError, cache_dir, download

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
URL_ENV = "DEEPATLAS_FASHION_MNIST_URL"
DEFAULT_URL = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("test", "images"): "t10k-images-idx3-ubyte.gz",
    ("test", "labels"): "t10k-labels-idx1-ubyte.gz",
}
# SHA-256 of each file's *decompressed* IDX bytes, computed from the Debian files. The .gz bytes
# themselves differ between mirrors (Debian's gzip headers omit the file name Zalando's carry,
# 24 bytes), the IDX content does not, so the check is on the content.
SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
EXPECTED_SHAPES = {"train": (60000, 28, 28), "test": (10000, 28, 28)}
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# per-pixel mean and std of the training images scaled to [0, 1] (measured; tests recompute them)
MEAN, STD = 0.2860, 0.3530
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class IDXError(ValueError):
    """The bytes are not a well-formed IDX file."""


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode an (uncompressed) IDX file into an array of its declared shape and type."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IDXError(f"{name}: bad magic {data[:4].hex() or '(empty)'}; an IDX file starts with "
                       f"00 00 <type> <ndim>")
    kind, ndim = data[2], data[3]
    if kind not in IDX_TYPES:
        raise IDXError(f"{name}: element type 0x{kind:02x}; valid: "
                       + ", ".join(f"0x{k:02x}" for k in IDX_TYPES))
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise IDXError(f"{name}: {ndim} dimensions but only {len(data)} bytes of header")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(IDX_TYPES[kind])
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise IDXError(f"{name}: shape {shape} needs {expected} bytes, file has {len(data)} "
                       f"(truncated or corrupted)")
    array = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx_gz(path: Path) -> np.ndarray:
    try:
        raw = gzip.decompress(Path(path).read_bytes())
    except (OSError, EOFError) as err:
        raise IDXError(f"{path}: not a valid gzip file ({err})") from err
    return parse_idx(raw, str(path))


def content_sha256(path: Path) -> str:
    """SHA-256 of a .gz file's decompressed bytes (what SHA256 above lists)."""
    try:
        return hashlib.sha256(gzip.decompress(Path(path).read_bytes())).hexdigest()
    except (OSError, EOFError) as err:  # a corrupted download is a checksum failure too
        raise ChecksumError(f"{path}: not a valid gzip file ({err})") from err


def _has_all(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES.values())


def fashion_mnist_dir(system_dir: Path = SYSTEM_DIR, cache: Path | None = None,
                      url: str | None = None) -> Path:
    """The folder holding the four .gz files: system, else cache, else downloaded into the cache."""
    cache = Path(cache) if cache is not None else cache_dir("fashion-mnist")
    for folder in (Path(system_dir), cache):
        if _has_all(folder):
            return folder
    base = url or os.environ.get(URL_ENV) or DEFAULT_URL
    for name in FILES.values():
        if (cache / name).is_file():
            continue
        try:
            download(base.rstrip("/") + "/" + name, cache / name, SHA256[name], digest=content_sha256)
        except ChecksumError:
            raise
        except OSError as err:  # urllib.error.URLError (no network, refused, 404) is an OSError
            raise FileNotFoundError(
                f"Fashion-MNIST not found in {system_dir} or {cache}, and downloading {name} from "
                f"{base} failed ({err}). Fix: apt-get install dataset-fashion-mnist, or set "
                f"{URL_ENV} to a URL serving the four .gz files.") from err
    return cache


@lru_cache(maxsize=4)
def _load(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx_gz(folder / FILES[(split, "images")])
    labels = read_idx_gz(folder / FILES[(split, "labels")])
    if images.shape != EXPECTED_SHAPES[split] or labels.shape != EXPECTED_SHAPES[split][:1]:
        raise IDXError(f"{folder}: {split} images {images.shape} / labels {labels.shape}; expected "
                       f"{EXPECTED_SHAPES[split]} / {EXPECTED_SHAPES[split][:1]}")
    if labels.max() >= len(CLASS_NAMES):
        raise IDXError(f"{folder}: label {labels.max()} out of range 0..{len(CLASS_NAMES) - 1}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())


def load_fashion_mnist(split: str = "train", folder: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of split "train" (60 000) or "test" (10 000)."""
    if split not in EXPECTED_SHAPES:
        raise ValueError(f"split {split!r}; valid: 'train', 'test'")
    images, labels = _load(Path(folder) if folder else fashion_mnist_dir(), split)
    return images.clone(), labels.clone()


def fashion_mnist_float(split: str = "train", flatten: bool = False,
                        folder: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images float32 normalised to mean 0 / std 1 by the training statistics, labels int64).

    Images are (N, 1, 28, 28), or (N, 784) with flatten=True."""
    images, labels = load_fashion_mnist(split, folder)
    x = (images.float() / 255.0 - MEAN) / STD
    x = x.reshape(len(x), -1) if flatten else x.unsqueeze(1)  # (N, 784) or (N, 1, 28, 28)
    return x, labels.long()
