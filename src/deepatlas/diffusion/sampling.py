"""Training loss and the sampling loop: DDPM/DDIM chains, guidance, SDEdit and inpainting.

Training (Ho et al. 2020, Algorithm 1; eq. 14 for ε):
    t ~ U{0..T−1}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε,  L = ‖target − f_θ(x_t, t)‖²
with the label replaced by the null class with probability p_uncond for classifier-free
guidance (Ho & Salimans 2022, Algorithm 1).

Sampling (Algorithm 2 for DDPM; Song et al. 2021 eq. 12 for DDIM) runs from x_T ~ N(0, I)
through the descending timesteps; at each step the network output is turned into ε̂, which the
guidance rules below adjust before the DDPM/DDIM step:
    classifier-free (Ho & Salimans 2022, eq. 6):  ε̃ = ε(x_t, ∅) + w (ε(x_t, y) − ε(x_t, ∅))
    classifier (Dhariwal & Nichol 2021, Algorithm 2 / eq. 14):
                                                  ε̃ = ε̂ − s √(1−ᾱ_t) ∇_{x_t} log p_φ(y | x_t, t)
SDEdit (Meng et al. 2022): start from x_{t0} = √ᾱ_{t0} x_guide + √(1−ᾱ_{t0}) ε, not from x_T.
Inpainting by replacement (Song et al. 2021 "score SDE" App. I; RePaint without resampling,
Lugmayr et al. 2022): after each step the known pixels are reset to the known image noised to
the new level, x_{t'} ← m ⊙ q(x_{t'} | x_0^known) + (1 − m) ⊙ x_{t'}.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.diffusion.samplers import ddim_step, ddpm_step
from deepatlas.diffusion.schedule import NoiseSchedule, check_prediction, inference_timesteps

SAMPLERS = ("ddpm", "ddim")
# f(x_t, t) -> network output; labels and guidance live in closures (see guided_denoiser)
Denoiser = Callable[[Tensor, Tensor], Tensor]


def diffusion_loss(model: nn.Module, schedule: NoiseSchedule, x0: Tensor, labels: Tensor | None = None,
                   prediction: str = "epsilon", p_uncond: float = 0.0, null_label: int | None = None) -> Tensor:
    """L_simple of Algorithm 1 for one batch x0 (B, C, H, W); labels dropped to null_label w.p. p_uncond."""
    check_prediction(prediction)
    B = x0.shape[0]
    t = torch.randint(0, schedule.T, (B,), device=x0.device)                 # t ~ U{0..T−1}
    noise = torch.randn_like(x0)                                              # ε ~ N(0, I)
    x_t = schedule.add_noise(x0, noise, t)                                    # eq. (4)
    if labels is not None and p_uncond > 0:
        if null_label is None:
            raise ValueError("p_uncond > 0 needs null_label, the class index meaning 'no label'")
        drop = torch.rand(B, device=x0.device) < p_uncond
        labels = torch.where(drop, torch.full_like(labels, null_label), labels)
    out = model(x_t, t, labels) if labels is not None else model(x_t, t)
    return F.mse_loss(out, schedule.target(prediction, x0, noise, t))          # ‖target − f_θ‖²


def guided_denoiser(model: nn.Module, labels: Tensor | None = None, scale: float = 1.0,
                    null_label: int | None = None, negative: Tensor | None = None) -> Denoiser:
    """f(x_t, t) for sampling: unconditional, conditional (scale 1), or classifier-free guided.

    labels are class indices (B,) or prompt token ids (B, S) (a text model(x, t, ids)). The
    unconditional branch reads the null class, or `negative` when given — a negative prompt's ids
    (or the empty prompt's), as diffusers' StableDiffusionPipeline swaps in negative_prompt_embeds:
        ε̃ = ε(x_t, n) + w (ε(x_t, y) − ε(x_t, n)),   n = ∅ (null) or the negative prompt.
    The guided output is formed on the raw network output (ε, x_0 or v alike: eq. 6 is linear)."""
    if labels is None:
        return lambda x, t: model(x, t)
    if negative is not None and negative.shape != labels.shape:
        raise ValueError(f"negative {tuple(negative.shape)} must have the labels' shape {tuple(labels.shape)}")
    if scale == 1.0 or (null_label is None and negative is None):
        if scale != 1.0:
            raise ValueError("classifier-free guidance (scale ≠ 1) needs null_label or a negative conditioning")
        return lambda x, t: model(x, t, labels)

    def guided(x: Tensor, t: Tensor) -> Tensor:
        uncond_labels = negative if negative is not None else torch.full_like(labels, null_label)
        # one batch of 2B: the conditional and the unconditional pass share the weights' reads
        cond, uncond = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, uncond_labels])).chunk(2)
        return uncond + scale * (cond - uncond)                              # eq. (6)

    return guided


def classifier_gradient(classifier: nn.Module, labels: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """g(x_t, t) = ∇_{x_t} log p_φ(y | x_t, t) of a noise-aware classifier(x_t, t) -> logits."""

    def grad(x: Tensor, t: Tensor) -> Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            log_p = classifier(x, t).log_softmax(-1).gather(1, labels[:, None]).sum()
            return torch.autograd.grad(log_p, x)[0]

    return grad


@dataclass
class Inpaint:
    """Known pixels: image (B, C, H, W) and mask (1 = known, keep; 0 = to generate)."""

    image: Tensor
    mask: Tensor


@torch.no_grad()
def sample(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], sampler: str = "ddpm",
           steps: int | None = None, eta: float = 0.0, prediction: str = "epsilon", clip: float | None = 1.0,
           generator: torch.Generator | None = None, start: Tensor | None = None, start_t: int | None = None,
           inpaint: Inpaint | None = None, classifier_grad: Callable[[Tensor, Tensor], Tensor] | None = None,
           classifier_scale: float = 0.0, keep: tuple[int, ...] = (), device: str | torch.device = "cpu",
           clipped_eps: bool = False) -> tuple[Tensor, dict[int, Tensor]]:
    """Run the reverse chain; return (x_0 (B, C, H, W), {t: x̂_0 at t for t in keep}).

    sampler 'ddpm' with steps=None visits all T steps (Algorithm 2); fewer steps stride them.
    start/start_t: SDEdit — begin from `start` noised to level start_t instead of pure noise.
    clipped_eps: DDIM re-derives ε̂ from the clipped x̂_0 (samplers.ddim_step)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    steps = schedule.T if steps is None else steps
    ts = inference_timesteps(schedule.T, steps)
    if start is not None:
        if start_t is None or not 0 <= start_t < schedule.T:
            raise ValueError(f"SDEdit start_t={start_t}; valid: 0..{schedule.T - 1}")
        ts = [t for t in ts if t <= start_t]
        x = schedule.add_noise(start.to(device), torch.randn(shape, generator=generator, device=device), ts[0])
    else:
        x = torch.randn(shape, generator=generator, device=device)                # x_T ~ N(0, I)
    kept: dict[int, Tensor] = {}
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        t_batch = torch.full((shape[0],), t, device=device, dtype=torch.long)
        eps = schedule.to_epsilon(prediction, denoiser(x, t_batch), x, t)
        if classifier_grad is not None and classifier_scale:
            # ε̃ = ε̂ − s √(1 − ᾱ_t) ∇ log p(y | x_t)     (Dhariwal & Nichol 2021, eq. 14)
            eps = eps - classifier_scale * (1 - schedule.alphas_cumprod[t]).sqrt() * classifier_grad(x, t_batch)
        # fresh noise only where the step adds it (DDIM with η = 0 is deterministic)
        noise = torch.randn(shape, generator=generator, device=device) if sampler == "ddpm" or eta > 0 else None
        if sampler == "ddpm":
            x, x0 = ddpm_step(schedule, eps, t, x, prev_t=prev, clip=clip, noise=noise)
        else:
            x, x0 = ddim_step(schedule, eps, t, x, prev_t=prev, eta=eta, clip=clip, noise=noise,
                                  clipped_eps=clipped_eps)
        if inpaint is not None:
            known = (inpaint.image if prev < 0 else
                     schedule.add_noise(inpaint.image, torch.randn(shape, generator=generator, device=device), prev))
            x = inpaint.mask * known + (1 - inpaint.mask) * x
        if t in keep:
            kept[t] = x0
    return x, kept


def sample_batched(denoiser_for: Callable[[slice], Denoiser], schedule: NoiseSchedule, n: int,
                   image_shape: tuple[int, ...], batch: int = 100, seed: int = 0, **kwargs) -> Tensor:
    """n samples in batches (bounded memory); denoiser_for(slice) builds the denoiser of each batch
    (its labels), and each batch has its own seeded generator so results do not depend on `batch`'s
    neighbours (a generator of the device the samples are drawn on: kwargs' device, the CPU by default)."""
    out = []
    for b, i in enumerate(range(0, n, batch)):
        rows = slice(i, min(n, i + batch))
        g = torch.Generator(device=kwargs.get("device", "cpu")).manual_seed(seed * 100_003 + b)
        x, _ = sample(denoiser_for(rows), schedule, (rows.stop - rows.start, *image_shape), generator=g, **kwargs)
        out.append(x)
    return torch.cat(out)
