"""Noise schedules and the closed-form forward process of DDPM (Ho, Jain & Abbeel 2020).

Forward process, eq. (2):  q(x_t | x_{t-1}) = N(√(1 − β_t) x_{t-1}, β_t I)
Closed form, eq. (4):      q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I),  ᾱ_t = Π_{s ≤ t} (1 − β_s)
so  x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε  with ε ~ N(0, I) (the reparameterisation used in training).

Schedules (t counted 0..T-1 as in diffusers, Ho et al.'s t = 1..T):
    linear  β_t from β_1 = 1e-4 to β_T = 0.02 (Ho et al. §4)
    cosine  ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008, β_t = min(1 − ᾱ(t+1)/ᾱ(t), 0.999)
            (Nichol & Dhariwal 2021, eq. 17; diffusers' "squaredcos_cap_v2")

What the network predicts (diffusers' `prediction_type`):
    epsilon  ε                                   (Ho et al. eq. 14, L_simple)
    sample   x_0
    v_prediction  v = √ᾱ_t ε − √(1 − ᾱ_t) x_0    (Salimans & Ho 2022, §4)
and each converts to the others given x_t (to_x0, to_epsilon below).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

BETA_SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "sample", "v_prediction")


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """(T,) β_t evenly spaced from beta_start to beta_end (Ho et al. 2020 §4)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """(T,) β_t of the cosine schedule (Nichol & Dhariwal 2021 eq. 17), clipped at max_beta."""

    def alpha_bar(u: float) -> float:
        # ᾱ(u) = cos²((u + s)/(1 + s) · π/2),  u = t/T ∈ [0, 1]
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    # β_t = 1 − ᾱ(t+1)/ᾱ(t)   (in float64 Python floats, as diffusers computes them)
    return torch.tensor([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)],
                        dtype=torch.float32)


def _gather(table: Tensor, t: Tensor | int, like: Tensor) -> Tensor:
    """table[t] shaped to broadcast against `like` (B, C, H, W): (B, 1, 1, 1), or a scalar."""
    t = torch.as_tensor(t, device=table.device, dtype=torch.long)
    out = table[t].to(device=like.device, dtype=like.dtype)
    return out.reshape(-1, *([1] * (like.dim() - 1))) if out.dim() else out


@dataclass
class NoiseSchedule:
    """β_t, α_t = 1 − β_t and ᾱ_t = Π α_s for t = 0..T-1, and the maps between x_0, ε, v and x_t.

    >>> s = NoiseSchedule(1000, "linear")
    >>> x_t = s.add_noise(x0, eps, t)          # eq. (4)
    """

    T: int = 1000
    kind: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        if self.kind not in BETA_SCHEDULES:
            raise ValueError(f"beta schedule {self.kind!r}; valid: {', '.join(BETA_SCHEDULES)}")
        if self.T < 1:
            raise ValueError(f"T={self.T} diffusion steps; needs T ≥ 1")
        self.betas = (linear_betas(self.T, self.beta_start, self.beta_end) if self.kind == "linear"
                      else cosine_betas(self.T))                                    # (T,)
        self.alphas = 1.0 - self.betas                                              # α_t
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)                     # ᾱ_t

    def alpha_bar(self, t: Tensor | int, like: Tensor) -> Tensor:
        """ᾱ_t broadcast against `like`; t < 0 means "before step 0", ᾱ = 1."""
        t = torch.as_tensor(t, dtype=torch.long).clamp(min=-1)
        one = torch.ones((), dtype=self.alphas_cumprod.dtype)
        table = torch.cat([self.alphas_cumprod, one[None]])     # index -1 -> ᾱ = 1
        return _gather(table, t, like)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε   (eq. 4); x0, noise (B, ...), t (B,) or int."""
        ab = _gather(self.alphas_cumprod, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def velocity(self, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """v = √ᾱ_t ε − √(1 − ᾱ_t) x_0   (Salimans & Ho 2022, §4)."""
        ab = _gather(self.alphas_cumprod, t, x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def target(self, prediction: str, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """What a network trained for `prediction` should output at (x_t, t)."""
        check_prediction(prediction)
        if prediction == "epsilon":
            return noise
        if prediction == "sample":
            return x0
        return self.velocity(x0, noise, t)

    def to_x0(self, prediction: str, output: Tensor, x_t: Tensor, t: Tensor | int) -> Tensor:
        """x̂_0 from a network output: ε -> (x_t − √(1−ᾱ) ε)/√ᾱ (eq. 4 solved for x_0); v -> √ᾱ x_t − √(1−ᾱ) v."""
        check_prediction(prediction)
        ab = _gather(self.alphas_cumprod, t, x_t)
        if prediction == "epsilon":
            return (x_t - (1 - ab).sqrt() * output) / ab.sqrt()
        if prediction == "sample":
            return output
        return ab.sqrt() * x_t - (1 - ab).sqrt() * output

    def to_epsilon(self, prediction: str, output: Tensor, x_t: Tensor, t: Tensor | int) -> Tensor:
        """ε̂ from a network output: x_0 -> (x_t − √ᾱ x_0)/√(1−ᾱ); v -> √ᾱ v + √(1−ᾱ) x_t."""
        check_prediction(prediction)
        ab = _gather(self.alphas_cumprod, t, x_t)
        if prediction == "epsilon":
            return output
        if prediction == "sample":
            return (x_t - ab.sqrt() * output) / (1 - ab).sqrt()
        return ab.sqrt() * output + (1 - ab).sqrt() * x_t

    def snr(self) -> Tensor:
        """(T,) signal-to-noise ratio ᾱ_t / (1 − ᾱ_t) (Kingma et al. 2021)."""
        return self.alphas_cumprod / (1 - self.alphas_cumprod)


def check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction type {prediction!r}; valid: {', '.join(PREDICTIONS)}")


def inference_timesteps(T: int, steps: int, spacing: str = "leading", offset: int = 0) -> list[int]:
    """The `steps` timesteps a sampler visits, descending (diffusers' set_timesteps; Lin et al. 2023
    Table 2): leading = 0, T/n, 2T/n, … (+ offset); trailing = T−1, T−1−T/n, …; linspace."""
    if not 1 <= steps <= T:
        raise ValueError(f"sampling steps {steps}; valid: 1..{T} (the trained T)")
    if spacing == "leading":
        ratio = T // steps
        ts = [i * ratio + offset for i in range(steps)][::-1]
    elif spacing == "trailing":
        ratio = T / steps
        ts = [int(round(T - i * ratio)) - 1 for i in range(steps)]
    elif spacing == "linspace":
        ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().tolist()[::-1]
    else:
        raise ValueError(f"timestep spacing {spacing!r}; valid: leading, trailing, linspace")
    return ts
