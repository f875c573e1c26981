"""Our schedules, forward process and DDPM/DDIM steps equal diffusers' DDPMScheduler/DDIMScheduler."""
from __future__ import annotations

import pytest
import torch

from deepatlas.diffusion.samplers import ddim_step, ddpm_step
from deepatlas.diffusion.schedule import NoiseSchedule, inference_timesteps

diffusers = pytest.importorskip("diffusers", reason="parity needs diffusers: pip install diffusers")
DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def _ddpm(kind, prediction="epsilon", variance="fixed_small", T=1000):
    return diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[kind],
                                   prediction_type=prediction, variance_type=variance, clip_sample=True)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_tables_equal_diffusers(kind):
    ours, ref = NoiseSchedule(1000, kind), _ddpm(kind)
    torch.testing.assert_close(ours.betas, ref.betas, rtol=0, atol=0)
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod, rtol=0, atol=0)
    # ᾱ falls monotonically from ≈1 to ≈0: the chain ends in (almost) pure noise
    assert ours.alphas_cumprod[0] > 0.99 and ours.alphas_cumprod[-1] < 1e-4
    assert (ours.alphas_cumprod.diff() < 0).all()


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_add_noise_and_velocity_equal_diffusers(kind):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    t = torch.tensor([0, 1, 10, 500, 998, 999])
    ours, ref = NoiseSchedule(1000, kind), _ddpm(kind)
    torch.testing.assert_close(ours.add_noise(x0, eps, t), ref.add_noise(x0, eps, t))
    torch.testing.assert_close(ours.velocity(x0, eps, t), ref.get_velocity(x0, eps, t))


def test_forward_process_moments_match_closed_form():
    """x_t = √ᾱ x0 + √(1−ᾱ) ε is N(√ᾱ x0, (1−ᾱ)I): check mean and variance by sampling (eq. 4)."""
    s = NoiseSchedule(1000, "linear")
    x0 = torch.full((200_000, 1), 0.7)
    g = torch.Generator().manual_seed(1)
    for t in (50, 400, 900):
        x_t = s.add_noise(x0, torch.randn(x0.shape, generator=g), t)
        ab = s.alphas_cumprod[t].item()
        assert abs(x_t.mean().item() - ab ** 0.5 * 0.7) < 0.01
        assert abs(x_t.var().item() - (1 - ab)) < 0.01


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
def test_conversions_invert_each_other(prediction):
    s = NoiseSchedule(1000, "cosine")
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(5, 1, 3, 3, generator=g), torch.randn(5, 1, 3, 3, generator=g)
    t = torch.tensor([3, 100, 400, 700, 990])
    x_t = s.add_noise(x0, eps, t)
    target = s.target(prediction, x0, eps, t)
    torch.testing.assert_close(s.to_x0(prediction, target, x_t, t), x0, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(s.to_epsilon(prediction, target, x_t, t), eps, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_step_equals_diffusers(kind, prediction, variance):
    ours, ref = NoiseSchedule(1000, kind), _ddpm(kind, prediction, variance)
    g = torch.Generator().manual_seed(3)
    x_t, out = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    for t in (999, 500, 37, 1, 0):
        want = ref.step(out, t, x_t, generator=torch.Generator().manual_seed(t))
        got, x0 = ddpm_step(ours, out, t, x_t, prediction=prediction, variance=variance,
                            generator=torch.Generator().manual_seed(t))
        torch.testing.assert_close(got, want.prev_sample)
        torch.testing.assert_close(x0, want.pred_original_sample)


def test_strided_ddpm_step_equals_diffusers():
    """DDPM with 50 inference steps: t -> t − 20, β̃ = 1 − ᾱ_t/ᾱ_{t'} (diffusers' set_timesteps)."""
    ours, ref = NoiseSchedule(1000, "linear"), _ddpm("linear")
    ref.set_timesteps(50)
    ts = inference_timesteps(1000, 50)
    assert ts == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(4)
    x_t, out = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        want = ref.step(out, t, x_t, generator=torch.Generator().manual_seed(i)).prev_sample
        got, _ = ddpm_step(ours, out, t, x_t, prev_t=prev, generator=torch.Generator().manual_seed(i))
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_inference_timesteps_equal_diffusers(spacing):
    for steps in (1, 10, 50, 1000):
        ref = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing)
        ref.set_timesteps(steps)
        assert inference_timesteps(1000, steps, spacing) == ref.timesteps.tolist(), (spacing, steps)


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("set_alpha_to_one,clipped_eps", [(True, False), (False, False), (True, True)])
def test_ddim_step_by_step_equals_diffusers(eta, prediction, set_alpha_to_one, clipped_eps):
    """A whole 50-step DDIM chain with a fixed fake network output, step by step."""
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type=prediction,
                                  clip_sample=True, set_alpha_to_one=set_alpha_to_one)
    ref.set_timesteps(50)
    ours = NoiseSchedule(1000, "linear")
    g = torch.Generator().manual_seed(5)
    x_ref = x_ours = torch.randn(2, 1, 4, 4, generator=g)
    for i, t in enumerate(ref.timesteps.tolist()):
        out = torch.sin(x_ref * (i + 1))          # any deterministic "network" of x_t
        noise = torch.randn(2, 1, 4, 4, generator=g)
        x_ref = ref.step(out, t, x_ref, eta=eta, variance_noise=noise if eta > 0 else None,
                         use_clipped_model_output=clipped_eps).prev_sample
        x_ours, _ = ddim_step(ours, torch.sin(x_ours * (i + 1)), t, x_ours, prev_t=t - 1000 // 50, eta=eta,
                              prediction=prediction, final_alpha_one=set_alpha_to_one, noise=noise,
                              clipped_eps=clipped_eps)
        torch.testing.assert_close(x_ours, x_ref, atol=1e-5, rtol=1e-5)


def test_ddim_eta_one_has_ddpm_variance():
    """DDIM with η = 1 adds the DDPM posterior's variance β̃ (Song et al. 2021 §4.1)."""
    s = NoiseSchedule(1000, "linear")
    x_t, out = torch.zeros(200_000, 1), torch.zeros(200_000, 1)
    x_prev, _ = ddim_step(s, out, 600, x_t, prev_t=599, eta=1.0, generator=torch.Generator().manual_seed(0))
    ab_t, ab_p = s.alphas_cumprod[600], s.alphas_cumprod[599]
    beta_tilde = (1 - ab_p) / (1 - ab_t) * s.betas[600]
    assert abs(x_prev.var().item() / beta_tilde.item() - 1) < 0.02


def test_bad_arguments_name_valid_values():
    with pytest.raises(ValueError, match="valid: linear, cosine"):
        NoiseSchedule(10, "quadratic")
    with pytest.raises(ValueError, match="valid: 1..1000"):
        inference_timesteps(1000, 0)
    with pytest.raises(ValueError, match="valid: epsilon"):
        NoiseSchedule(10).to_x0("noise", torch.zeros(1), torch.zeros(1), 0)
    with pytest.raises(ValueError, match="fixed_small"):
        ddpm_step(NoiseSchedule(10), torch.zeros(1, 1), 5, torch.zeros(1, 1), variance="learned")
