"""Log-mel spectrogram, Whisper's way (Radford et al. 2022, §2.2; openai/whisper audio.py).

    frames   x padded by n_fft/2 on each side (reflection), windows of n_fft=400 samples (25 ms)
             every hop=160 (10 ms), each times a periodic Hann window w[n] = ½(1 − cos(2πn/N))
    power    P[f, t] = |Σ_n w[n] x[t·hop + n] e^{−2πi f n / N}|²,  f = 0..N/2    (201 bins)
    mel      M = F P with F the (80, 201) Slaney-normalised triangular filterbank
    log      L = log₁₀(max(M, 1e-10)),  the last frame dropped (as Whisper does)
    clamp    L = max(L, max(L) − 8)        (an 80 dB dynamic range below the loudest bin)
    scale    (L + 4) / 4                   (roughly into [−1, 1])

Whisper pads (or cuts) every input to 30 s = 480 000 samples first, so the encoder always sees
3000 frames; `log_mel(x, pad_to=None)` skips that (the CTC recogniser uses any length).
"""
from __future__ import annotations

import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
CHUNK_SECONDS = 30
CHUNK_SAMPLES = SAMPLE_RATE * CHUNK_SECONDS


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    mel = 3.0 * f / 200.0
    log_step = np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / log_step, mel)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(log_step * (m - 15.0)), 200.0 * m / 3.0)


def mel_filterbank(n_mels: int = 80, n_fft: int = N_FFT, rate: int = SAMPLE_RATE,
                   f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
    """(n_mels, n_fft/2 + 1): triangles between n_mels + 2 points equally spaced in mel, each
    scaled by 2 / (f_right − f_left) so that every filter has the same area (Slaney norm)."""
    f_max = rate / 2 if f_max is None else f_max
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)                          # (F,)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))   # (n_mels + 2,)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - left) / (centre - left)
    down = (right - freqs[None, :]) / (right - centre)
    tri = np.maximum(0.0, np.minimum(up, down))                              # (n_mels, F)
    return (tri * (2.0 / (right - left))).astype(np.float32)


def pad_or_trim(x: np.ndarray, length: int = CHUNK_SAMPLES) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x[:length] if len(x) >= length else np.pad(x, (0, length - len(x)))


def log_mel(audio: np.ndarray | torch.Tensor, n_mels: int = 80, pad_to: int | None = CHUNK_SAMPLES,
            fast: bool = True) -> torch.Tensor:
    """16 kHz mono samples (T,) -> (n_mels, frames) Whisper log-mel features (frames = 3000 at 30 s)."""
    x = torch.as_tensor(np.asarray(audio, np.float32))
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"audio should be a non-empty 1-D signal, got shape {tuple(x.shape)}")
    if pad_to is not None:
        x = torch.as_tensor(pad_or_trim(x.numpy(), pad_to))
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    x = x.double()
    if fast:
        spec = torch.stft(x, N_FFT, HOP, window=window, center=True, pad_mode="reflect",
                          return_complex=True)                               # (F, frames + 1)
    else:  # the frames and the DFT written out
        padded = torch.nn.functional.pad(x[None, None], (N_FFT // 2, N_FFT // 2), mode="reflect")[0, 0]
        frames = padded.unfold(0, N_FFT, HOP) * window                      # (frames + 1, N)
        f = torch.arange(N_FFT // 2 + 1, dtype=torch.float64)[:, None]
        n = torch.arange(N_FFT, dtype=torch.float64)[None, :]
        dft = torch.exp(-2j * torch.pi * f * n / N_FFT)                     # (F, N)
        spec = dft @ frames.T.to(torch.complex128)                          # (F, frames + 1)
    power = spec[:, :-1].abs() ** 2                                         # (F, frames)
    mel = torch.from_numpy(mel_filterbank(n_mels)).double() @ power         # (n_mels, frames)
    logm = mel.clamp(min=1e-10).log10()
    logm = torch.maximum(logm, logm.max() - 8.0)
    return ((logm + 4.0) / 4.0).float()
