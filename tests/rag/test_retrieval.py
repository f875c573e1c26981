import hashlib

import numpy as np
import pytest
import torch

from deepatlas.rag.corpus import Document
from deepatlas.rag.dense import DenseIndex
from deepatlas.rag.hybrid import rrf
from deepatlas.rag.store import IndexSettings, open_index


class HashEncoder:
    """Deterministic bag-of-words embeddings: fast stand-in for MiniLM in store tests."""
    dim = 32

    def encode(self, texts, batch_size=32):
        out = torch.zeros(len(texts), self.dim)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
        return torch.nn.functional.normalize(out + 1e-6, dim=-1)


def test_rrf_by_hand():
    fused = rrf([[1, 2, 3], [3, 1]], k=60)
    assert [d for d, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2][1] == pytest.approx(1 / 62)


def test_flat_is_exact_and_approximate_indexes_recall():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:50] + 0.1 * rng.standard_normal((50, 16)).astype(np.float32)
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    _, ids = DenseIndex(16, "flat").build(x).search(q, 10)
    np.testing.assert_array_equal(ids, truth)
    for kind in ("ivf", "hnsw"):
        _, got = DenseIndex(16, kind, nlist=16, nprobe=8, ef_search=64).build(x).search(q, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, got)])
        assert recall > 0.8, (kind, recall)


def test_index_is_built_once_reloaded_and_rebuilt_on_change(tmp_path):
    docs = [Document(f"d/{i}", "D", str(i), f"chapter {i} tells of the {w} and the river. " * 3)
            for i, w in enumerate(["fox", "heron", "salmon", "otter"])]
    enc, s = HashEncoder(), IndexSettings(size=12)
    r1, built = open_index("t", docs, s, enc, folder=tmp_path / "ix", progress=False, log=lambda m: None)
    assert built and (tmp_path / "ix" / "manifest.json").is_file()
    r2, built = open_index("t", docs, s, enc, folder=tmp_path / "ix", progress=False)
    assert not built and [c.text for c in r2.chunks] == [c.text for c in r1.chunks]
    assert r2.search("otter river", 1, "bm25")[0][0] == r1.search("otter river", 1, "bm25")[0][0]
    top = r2.chunks[r2.search("the salmon", 1, "hybrid")[0][0]]
    assert "salmon" in top.text
    changed = docs[:3] + [Document("d/3", "D", "3", "an edited chapter about badgers")]
    _, built = open_index("t", changed, s, enc, folder=tmp_path / "ix", progress=False, log=lambda m: None)
    assert built
    (tmp_path / "ix" / "embeddings.npy").write_bytes(b"damaged")
    _, built = open_index("t", changed, s, enc, folder=tmp_path / "ix", progress=False, log=lambda m: None)
    assert built
    with pytest.raises(ValueError, match="empty"):
        r2.search("  ", 3)
    with pytest.raises(ValueError, match="valid"):
        r2.search("x", 3, "magic")
