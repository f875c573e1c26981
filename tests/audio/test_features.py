"""Log-mel features = transformers' WhisperFeatureExtractor; the plain DFT path = torch.stft."""
import numpy as np
import pytest
import torch

from deepatlas.audio.features import hz_to_mel, log_mel, mel_filterbank, mel_to_hz


def test_mel_scale_round_trip_and_break_point():
    f = np.array([0.0, 500.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-9)
    assert hz_to_mel(1000.0) == pytest.approx(15.0)


def test_filterbank_and_features_equal_hf():
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    fe = transformers.WhisperFeatureExtractor()
    np.testing.assert_allclose(mel_filterbank(), fe.mel_filters.T, atol=1e-7)
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    x = (0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(len(t)))
    want = fe(x.astype(np.float32), sampling_rate=16000, return_tensors="np").input_features[0]
    got = log_mel(x)
    assert got.shape == (80, 3000)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)


def test_plain_dft_equals_stft():
    x = np.random.default_rng(1).standard_normal(4000)
    torch.testing.assert_close(log_mel(x, pad_to=None, fast=False), log_mel(x, pad_to=None), atol=1e-5, rtol=1e-5)


def test_empty_audio_named():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        log_mel(np.zeros(0))
