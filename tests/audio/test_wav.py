"""WAV reading (formats, stereo, damaged files) and the windowed-sinc resampler = scipy's resample_poly."""
import struct

import numpy as np
import pytest

from deepatlas.audio.wav import WavError, read_audio, read_wav, resample, write_wav


def wav_bytes(pcm: bytes, rate=16000, channels=1, bits=16, tag=1, extra=b""):
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    body = b"WAVE" + extra + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_pcm16_stereo_to_mono(tmp_path):
    left, right = np.array([1000, -2000, 32767], "<i2"), np.array([3000, 2000, -32768], "<i2")
    pcm = np.stack([left, right], 1).tobytes()
    p = tmp_path / "s.wav"
    # an unknown chunk before fmt (odd length, padded) must be skipped
    p.write_bytes(wav_bytes(pcm, 22050, channels=2, extra=b"LIST" + struct.pack("<I", 3) + b"abc\0"))
    x, rate = read_wav(p)
    assert rate == 22050
    np.testing.assert_allclose(x, (left / 32768 + right / 32768) / 2, atol=1e-7)


def test_other_sample_formats(tmp_path):
    v = np.array([0.5, -0.25, 0.0], np.float32)
    for bits, tag, pcm in ((8, 1, (v * 128 + 128).astype(np.uint8).tobytes()),
                           (32, 3, v.tobytes()),
                           (32, 1, (v * 2 ** 31).astype("<i4").tobytes()),
                           (24, 1, b"".join(int(s * 2 ** 23).to_bytes(3, "little", signed=True) for s in v))):
        p = tmp_path / f"{bits}_{tag}.wav"
        p.write_bytes(wav_bytes(pcm, bits=bits, tag=tag))
        np.testing.assert_allclose(read_wav(p)[0], v, atol=1e-6, err_msg=f"{bits}-bit tag {tag}")


def test_round_trip_write(tmp_path):
    x = np.sin(np.arange(800) / 10).astype(np.float32) * 0.9
    write_wav(tmp_path / "a.wav", x, 8000)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and np.abs(x - y).max() < 1 / 2 ** 15


@pytest.mark.parametrize("content, match", [
    (b"", "not a WAV"), (b"hello world, not audio at all", "not a WAV"),
    (wav_bytes(b""), "no audio samples"),
    (wav_bytes(b"\0\0" * 4, bits=12), "not supported"),
    (b"RIFF\x10\0\0\0WAVEfmt \x40\0\0\0\x01\0", "claims 64 bytes"),
])
def test_bad_files_named(tmp_path, content, match):
    p = tmp_path / "bad.wav"
    p.write_bytes(content)
    with pytest.raises(WavError, match=match):
        read_wav(p)
    with pytest.raises(WavError, match="cannot read"):
        read_wav(tmp_path / "missing.wav")


@pytest.mark.parametrize("rates", [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000), (11025, 16000),
                                   (16000, 8000), (32000, 16000)])
def test_resample_equals_scipy(rates):
    signal = pytest.importorskip("scipy.signal")
    import math
    a, b = rates
    x = np.random.default_rng(0).standard_normal(5001)
    g = math.gcd(a, b)
    np.testing.assert_allclose(resample(x, a, b), signal.resample_poly(x, b // g, a // g), atol=1e-6)


def test_resample_keeps_a_tone_and_removes_aliases():
    t = np.arange(44100) / 44100
    y = resample(np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 12000 * t), 44100, 16000)
    spec = np.abs(np.fft.rfft(y[1000:-1000] * np.hanning(len(y) - 2000)))
    freqs = np.fft.rfftfreq(len(y) - 2000, 1 / 16000)
    assert abs(freqs[spec.argmax()] - 440) < 3
    # 12 kHz is above the new Nyquist (8 kHz): it must not fold back to 4 kHz
    assert spec[np.abs(freqs - 4000) < 50].max() < 1e-3 * spec.max()


def test_read_audio_resamples(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros(4410), 44100)
    assert len(read_audio(tmp_path / "a.wav", 16000)) == 1600
