"""Where deepatlas keeps data it derives or downloads, and a checked, atomic download."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:          # not a POSIX system: no cross-process lock (each process builds)
    fcntl = None


def cache_dir(*parts: str) -> Path:
    """$DEEPATLAS_CACHE/<parts> (default ~/.cache/deepatlas/<parts>); not created here."""
    root = os.environ.get("DEEPATLAS_CACHE") or Path.home() / ".cache" / "deepatlas"
    return Path(root).joinpath(*parts)


@contextmanager
def build_lock(*parts: str) -> Iterator[None]:
    """Hold an exclusive lock on $DEEPATLAS_CACHE/<parts>.lock while a cached item is looked for
    and, if missing, built and saved. Two processes wanting the same item (two pytest workers,
    two experiments) then build it once: the second waits, then loads what the first saved."""
    path = cache_dir(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ChecksumError(ValueError):
    """A downloaded file's SHA-256 is not the one expected."""


def download(url: str, dest: Path, sha256: str | None = None, timeout: float = 60.0,
             digest: Callable[[Path], str] = sha256_file) -> Path:
    """Fetch `url` into `dest` atomically: temp file in the same folder, SHA-256 check, rename.

    `digest(path)` computes what is compared with `sha256` (default: the SHA-256 of the file's
    bytes; a caller may hash the decompressed content instead).

    On a checksum mismatch (or any failure) the temp file is deleted and `dest` is untouched, so a
    half-written or corrupted file never sits where a later call would trust it.
    Network errors propagate as urllib.error.URLError / OSError.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if sha256 is not None:
            got = digest(tmp)
            if got != sha256:
                raise ChecksumError(f"{url}: SHA-256 {got} does not match the expected {sha256}; "
                                    f"the file was deleted (a corrupted download or a different mirror)")
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)

