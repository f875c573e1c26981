"""`deepatlas transcribe`: one-line errors for bad files; audio over 30 s is cut into windows."""
import numpy as np

from deepatlas.audio.transcribe import Transcriber
from deepatlas.audio.wav import write_wav
from deepatlas.cli import main
from deepatlas.models.whisper import SpecialTokens, Whisper, WhisperConfig
from deepatlas.text.bpe import ByteLevelBPE


def test_bad_files_one_line(tmp_path, capsys):
    (tmp_path / "text.wav").write_text("not audio")
    write_wav(tmp_path / "empty.wav", np.zeros(0), 16000)
    for name, needle in (("text.wav", "not a WAV"), ("empty.wav", "no audio samples"), ("none.wav", "cannot read")):
        assert main(["transcribe", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and "Traceback" not in err
    assert main(["transcribe", str(tmp_path / "text.wav"), "--beam", "0"]) == 2


def test_long_audio_cut_into_windows(monkeypatch):
    cfg = WhisperConfig(n_mels=80, n_audio_ctx=1500, d_model=8, n_head=2, n_audio_layer=1, n_text_ctx=8,
                        n_text_layer=1, n_vocab=300)
    tok = ByteLevelBPE({chr(c): i for i, c in enumerate(range(ord("a"), ord("z") + 1))}, [])
    tr = Transcriber(Whisper(cfg), tok, SpecialTokens(eot=290, sot=291, no_timestamps=292, timestamp_begin=293))
    seen = []

    def fake_generate(mel, special, **kw):
        seen.append(tuple(mel.shape))
        return [[len(seen) - 1]]          # window k says the k-th letter
    monkeypatch.setattr(tr.model, "generate", fake_generate)
    assert tr.transcribe(np.zeros(16000 * 65, np.float32)) == "a b c"
    assert seen == [(1, 80, 3000)] * 3
