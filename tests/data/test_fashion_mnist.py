"""Fashion-MNIST: our IDX parser, the real files, and the checked download path (local server)."""
import functools
import gzip
import http.server
import shutil
import struct
import threading

import numpy as np
import pytest
import torch

from deepatlas.data.cache import ChecksumError
from deepatlas.data.fashion_mnist import (CLASS_NAMES, FILES, MEAN, STD, SYSTEM_DIR, IDXError,
                                          fashion_mnist_dir, fashion_mnist_float,
                                          load_fashion_mnist, parse_idx)

needs_debian = pytest.mark.skipif(
    not all((SYSTEM_DIR / n).is_file() for n in FILES.values()),
    reason=f"Fashion-MNIST not in {SYSTEM_DIR} (apt-get install dataset-fashion-mnist)")


def test_parse_idx_reads_declared_shape_and_type():
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2, 3, 4) + values.tobytes()
    np.testing.assert_array_equal(parse_idx(data), values)
    floats = np.array([1.5, -2.0], dtype=">f4")
    np.testing.assert_array_equal(parse_idx(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 2)
                                            + floats.tobytes()), [1.5, -2.0])


@pytest.mark.parametrize("data, message", [
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "element type 0x07"),
    (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "header"),
    (b"\x00\x00\x08\x02" + struct.pack(">2I", 2, 2) + b"\x00" * 3, "needs 16 bytes, file has 15"),
])
def test_bad_idx_is_a_clear_error(data, message):
    with pytest.raises(IDXError, match=message):
        parse_idx(data)


@needs_debian
def test_real_files_shapes_labels_and_normalisation():
    x, y = load_fashion_mnist("train")
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.uint8
    assert torch.equal(y.bincount(), torch.full((10,), 6000))  # balanced: 6000 per class
    xt, yt = load_fashion_mnist("test")
    assert xt.shape == (10000, 28, 28) and torch.equal(yt.bincount(), torch.full((10,), 1000))
    scaled = x.float() / 255
    assert abs(scaled.mean().item() - MEAN) < 1e-3 and abs(scaled.std().item() - STD) < 1e-3
    xf, yf = fashion_mnist_float("train", flatten=True)
    assert xf.shape == (60000, 784) and yf.dtype == torch.long
    assert abs(xf.mean().item()) < 1e-3 and abs(xf.std().item() - 1) < 1e-3
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[9] == "Ankle boot"
    with pytest.raises(ValueError, match="'train', 'test'"):
        load_fashion_mnist("val")


@pytest.fixture
def serve(tmp_path):
    """serve(folder) -> base URL of a local HTTP server on 127.0.0.1 serving that folder."""
    servers = []

    def start(folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@needs_debian
def test_download_checks_sha256_and_writes_atomically(tmp_path, serve):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in FILES.values():
        # re-gzip with another header (as Zalando's mirror differs from Debian's): the check is
        # on the content, so it still passes
        (mirror / name).write_bytes(gzip.compress(gzip.decompress((SYSTEM_DIR / name).read_bytes()),
                                                  compresslevel=1))
    cache = tmp_path / "cache"
    folder = fashion_mnist_dir(system_dir=tmp_path / "nothing", cache=cache, url=serve(mirror))
    assert folder == cache and sorted(p.name for p in cache.iterdir()) == sorted(FILES.values())
    x, y = load_fashion_mnist("test", folder=cache)
    assert torch.equal(x, load_fashion_mnist("test")[0]) and torch.equal(y, load_fashion_mnist("test")[1])


@needs_debian
def test_corrupted_download_is_deleted_and_an_error(tmp_path, serve):
    mirror = tmp_path / "mirror"
    shutil.copytree(SYSTEM_DIR, mirror)
    labels = gzip.decompress((mirror / "t10k-labels-idx1-ubyte.gz").read_bytes())
    corrupted = labels[:100] + bytes([(labels[100] + 1) % 10]) + labels[101:]  # one label changed
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(corrupted))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz: SHA-256"):
        fashion_mnist_dir(system_dir=tmp_path / "nothing", cache=cache, url=serve(mirror))
    assert not (cache / "t10k-labels-idx1-ubyte.gz").exists()
    assert not any(p.name.endswith(".part") for p in cache.iterdir())  # no temp file left


def test_no_data_and_no_network_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPATLAS_FASHION_MNIST_URL", "http://127.0.0.1:9/")  # nothing listens
    with pytest.raises(FileNotFoundError) as err:
        fashion_mnist_dir(system_dir=tmp_path / "a", cache=tmp_path / "b")
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    assert "DEEPATLAS_FASHION_MNIST_URL" in str(err.value) and "127.0.0.1:9" in str(err.value)
