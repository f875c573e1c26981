import pytest

from deepatlas.audio.transcribe import INSTALL_HINT, whisper_dir
from deepatlas.experiments.m3_whisper import librivox


def test_m3_whisper_quick_holds(run_quick):
    if whisper_dir() is None:
        pytest.skip(f"Whisper tiny.en weights not installed: {INSTALL_HINT}")
    if not librivox():
        pytest.skip("LibriVox recordings not installed: apt-get install pocketsphinx-testdata")
    s = run_quick("whisper-librivox")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["wer_greedy"] <= 0.10 and m["recordings"] == 3
    if "ct2_same_tokens" in m:
        assert m["ct2_same_tokens"] == 3


def test_m3_ctc_quick_holds(run_quick):
    from deepatlas.audio.speech_data import espeak
    if espeak() is None:
        pytest.skip("espeak-ng not installed: apt-get install espeak-ng")
    s = run_quick("ctc-espeak")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["cer_greedy"] <= 0.5 * m["cer_baseline"] and m["cer_voice"] < m["cer_baseline"]
