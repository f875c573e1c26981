"""One reverse step x_t -> x_{t'} (t' < t) of DDPM (Ho et al. 2020) and DDIM (Song, Meng & Ermon 2021).

Both take the network's raw output, turn it into x̂_0 (and ε̂) with the schedule, then:

DDPM, the posterior q(x_{t'} | x_t, x_0) (Ho et al. eq. 6–7, for a stride t -> t' with
ᾱ_{t'} in place of ᾱ_{t-1} and β̃ = 1 − ᾱ_t/ᾱ_{t'}, as diffusers' DDPMScheduler does):
    μ̃ = √ᾱ_{t'} β̃ / (1 − ᾱ_t) · x̂_0 + √(ᾱ_t/ᾱ_{t'}) (1 − ᾱ_{t'}) / (1 − ᾱ_t) · x_t     eq. (7)
    x_{t'} = μ̃ + σ z,   σ² = (1 − ᾱ_{t'})/(1 − ᾱ_t) · β̃   ("fixed_small", β̃_t of eq. 7)
                        σ² = β̃                           ("fixed_large", σ_t² = β_t of §3.2)
DDIM, eq. (12):
    x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ²) ε̂ + σ z,
    σ = η √((1 − ᾱ_{t'})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'})                                     eq. (16)
η = 0 is deterministic (an ODE-like map from noise to image), η = 1 is DDPM's fixed_small variance.

No noise is added on the last step (t' = -1). z is passed in (or drawn from `generator`), so a
step can be compared number for number with diffusers'.
"""
from __future__ import annotations

import torch
from torch import Tensor

from deepatlas.diffusion.schedule import NoiseSchedule

VARIANCES = ("fixed_small", "fixed_large")


def _noise_like(x: Tensor, noise: Tensor | None, generator: torch.Generator | None) -> Tensor:
    if noise is not None:
        return noise
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def ddpm_step(schedule: NoiseSchedule, output: Tensor, t: int, x_t: Tensor, prev_t: int | None = None,
              prediction: str = "epsilon", variance: str = "fixed_small", clip: float | None = 1.0,
              noise: Tensor | None = None, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """x_t (B, C, H, W) at step t -> (x_{prev_t}, x̂_0). prev_t defaults to t − 1; -1 is the end."""
    if variance not in VARIANCES:
        raise ValueError(f"DDPM variance {variance!r}; valid: {', '.join(VARIANCES)}")
    prev_t = t - 1 if prev_t is None else prev_t
    ab_t = schedule.alpha_bar(t, x_t)                  # ᾱ_t
    ab_prev = schedule.alpha_bar(prev_t, x_t)          # ᾱ_{t'} (1 at t' = -1)
    beta_step = 1 - ab_t / ab_prev                     # β̃ = 1 − ᾱ_t / ᾱ_{t'}
    x0 = schedule.to_x0(prediction, output, x_t, t)
    if clip is not None:                               # images live in [-1, 1]
        x0 = x0.clamp(-clip, clip)
    # eq. (7): μ̃ = √ᾱ_{t'} β̃/(1 − ᾱ_t) x̂_0 + √(1 − β̃) (1 − ᾱ_{t'})/(1 − ᾱ_t) x_t
    mean = (ab_prev.sqrt() * beta_step / (1 - ab_t)) * x0 + ((1 - beta_step).sqrt() * (1 - ab_prev) / (1 - ab_t)) * x_t
    if t == 0 or prev_t < 0:
        return mean, x0
    if variance == "fixed_small":   # β̃_t = (1 − ᾱ_{t'})/(1 − ᾱ_t) β_t  (eq. 7)
        var = ((1 - ab_prev) / (1 - ab_t) * beta_step).clamp(min=1e-20)
    else:                           # σ_t² = β_t  (§3.2: "similar results")
        var = beta_step
    return mean + var.sqrt() * _noise_like(x_t, noise, generator), x0


def ddim_step(schedule: NoiseSchedule, output: Tensor, t: int, x_t: Tensor, prev_t: int, eta: float = 0.0,
              prediction: str = "epsilon", clip: float | None = 1.0, final_alpha_one: bool = True,
              noise: Tensor | None = None, generator: torch.Generator | None = None,
              clipped_eps: bool = False) -> tuple[Tensor, Tensor]:
    """x_t -> (x_{prev_t}, x̂_0) by DDIM eq. (12); prev_t < 0 is the end (ᾱ = 1, or ᾱ_0 when
    final_alpha_one is False: diffusers' set_alpha_to_one).

    clipped_eps re-derives ε̂ = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t) from the *clipped* x̂_0 (GLIDE's
    choice; diffusers' use_clipped_model_output=True), so the "direction to x_t" agrees with the
    x̂_0 actually used. Without it a network (or a guided ε̃) whose x̂_0 leaves [-1, 1] pairs a
    clipped x̂_0 with an ε̂ that no longer explains x_t, and η = 0 chains drift (G8 measures it)."""
    if eta < 0:
        raise ValueError(f"DDIM eta={eta}; valid: ≥ 0 (0 deterministic, 1 = DDPM's variance)")
    ab_t = schedule.alpha_bar(t, x_t)
    ab_prev = (schedule.alpha_bar(prev_t, x_t) if prev_t >= 0 or final_alpha_one
               else schedule.alpha_bar(0, x_t))
    x0 = schedule.to_x0(prediction, output, x_t, t)
    eps = schedule.to_epsilon(prediction, output, x_t, t)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        if clipped_eps:   # eq. (4) solved for ε with the clipped x̂_0
            eps = (x_t - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()
    # eq. (16): σ = η √((1 − ᾱ_{t'})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'})
    sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).sqrt()
    # eq. (12): "predicted x_0" + "direction pointing to x_t" + random noise
    x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma ** 2).sqrt() * eps
    if eta > 0:
        x_prev = x_prev + sigma * _noise_like(x_t, noise, generator)
    return x_prev, x0
