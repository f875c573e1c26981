"""Our CTranslate2 model.bin reader: synthetic files (layout, every damaged size named) and the
real Whisper tiny.en (encoder = ctranslate2's, transcripts of real LibriVox recordings)."""
import struct

import numpy as np
import pytest
import torch

from deepatlas.audio.ct2 import CT2Error, read_model_bin
from deepatlas.audio.transcribe import INSTALL_HINT, whisper_dir


def s(text):
    raw = text.encode()
    return struct.pack("<H", len(raw) + 1) + raw + b"\0"


def var(name, array, code):
    return (s(name) + struct.pack("<B", array.ndim) + b"".join(struct.pack("<I", d) for d in array.shape)
            + struct.pack("<BI", code, array.nbytes) + array.tobytes())


def model_bin(variables, aliases=()):
    out = struct.pack("<I", 6) + s("TestSpec") + struct.pack("<II", 1, len(variables)) + b"".join(variables)
    return out + struct.pack("<I", len(aliases)) + b"".join(s(a) + s(b) for a, b in aliases)


def test_reads_variables_and_aliases(tmp_path):
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    p = tmp_path / "model.bin"
    p.write_bytes(model_bin([var("a/weight", w, 4), var("a/n", np.array(7, np.int16), 2),
                             var("b", np.array([1.5, -2], np.float32), 0)], [("c", "a/weight")]))
    spec, got = read_model_bin(p)
    assert spec == "TestSpec"
    torch.testing.assert_close(got["a/weight"], torch.from_numpy(w))
    assert int(got["a/n"]) == 7 and got["c"] is got["a/weight"] and got["b"].tolist() == [1.5, -2]


def test_damage_is_named(tmp_path):
    good = model_bin([var("w", np.zeros((4, 4), np.float32), 0)])
    p = tmp_path / "model.bin"
    for data, match in ((good[:-10], "truncated"), (b"\x09\0\0\0", "binary version 9"),
                        (good.replace(struct.pack("<BI", 0, 64), struct.pack("<BI", 0, 60)), "should take 64 bytes"),
                        (good.replace(struct.pack("<BI", 0, 64), struct.pack("<BI", 9, 64)), "dtype code 9"),
                        (struct.pack("<I", 6) + s("X") + struct.pack("<II", 1, 10 ** 9), "claims 1000000000 variables")):
        p.write_bytes(data)
        with pytest.raises(CT2Error, match=match):
            read_model_bin(p)


@pytest.fixture(scope="module")
def transcriber():
    if whisper_dir() is None:
        pytest.skip(f"Whisper tiny.en weights not installed: {INSTALL_HINT}")
    from deepatlas.audio.transcribe import Transcriber
    return Transcriber.load()


LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0930.wav"


def test_real_tiny_en_transcribes_librivox(transcriber):
    import os
    if not os.path.exists(LIBRIVOX):
        pytest.skip("LibriVox recordings not installed: apt-get install pocketsphinx-testdata")
    from deepatlas.audio.scoring import normalise
    from deepatlas.audio.wav import read_audio
    x = read_audio(LIBRIVOX)
    assert normalise(transcriber.transcribe(x)) == "he might even have been made amiable himself"
    stamped = transcriber.transcribe(x, timestamps=True)
    assert stamped.startswith("<|0.00|>") and stamped.endswith("|>")


def test_real_encoder_equals_ctranslate2(transcriber):
    ct2 = pytest.importorskip("ctranslate2", reason="ctranslate2 not installed: pip install ctranslate2")
    mel = torch.randn(1, 80, 3000) * 0.3
    ref = ct2.models.Whisper(str(whisper_dir()), device="cpu", compute_type="float32", intra_threads=1)
    want = np.array(ref.encode(ct2.StorageView.from_array(mel.numpy()), to_cpu=True))
    with torch.no_grad():
        got = transcriber.model.encode(mel).numpy()
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-3)
