"""Diffusion sampling: DDIM-50 against DDPM-1000 on one trained model, and our sampler loop
against diffusers' DDIMPipeline loop around the same network.

ddim50_vs_ddpm1000 samples the G8 experiment's class-conditional U-Net (unconditionally, the null
label) — from $DEEPATLAS_CACHE/ddpm/ if a G8 full run cached it, otherwise it is trained first
(minutes, not timed). Both samplers start from the same seeds; FID (own Fashion-MNIST features)
of each against the same 1000 test images is recorded beside the time: goal ≥ 15× faster, and
`fid_within_20pct` says whether DDIM-50's FID is within 20 % of DDPM-1000's.

ddim_loop_vs_diffusers_pipeline runs DDIM-50 with diffusers' UNet2DModel (weights copied from our
U-Net) inside our `sample` loop and inside DDIMPipeline: the network is the same, so the ratio is
the loops' own cost per step (goal ≥ 1.0: ours no slower). The two outputs are checked equal.
"""
from __future__ import annotations

import torch

from bench.common import interleaved_median_times, result

N_SAMPLES = 64


def ddim50_vs_ddpm1000() -> dict:
    from deepatlas.data.images import fashion_images
    from deepatlas.diffusion.fashion import generate
    from deepatlas.diffusion.store import cached_ddpm
    from deepatlas.experiments.g8_guidance import Config
    from deepatlas.metrics.features import feature_network, score_samples

    torch.set_num_threads(1)
    setup = Config().ddpm
    model, schedule, _ = cached_ddpm(setup, 0)
    out: dict[str, torch.Tensor] = {}

    def run(name: str, sampler: str, steps: int):
        def fn():
            out[name] = generate(model, schedule, setup, N_SAMPLES, sampler, steps, seed=1, clipped_eps=True)
        return fn

    t = interleaved_median_times({"ddim50": run("ddim50", "ddim", 50), "ddpm1000": run("ddpm1000", "ddpm", 1000)},
                                 warmup=0, repeats=1)
    net, _ = feature_network(setup.size)
    real, _ = fashion_images("test", setup.size)
    fid_ddim = score_samples(net, out["ddim50"], real[:1000]).fid
    fid_ddpm = score_samples(net, out["ddpm1000"], real[:1000]).fid
    rec = result("ddim50_vs_ddpm1000", "s", t["ddim50"], t["ddpm1000"], "DDPM-1000, same model", goal=15.0)
    return {**rec, "fid_ddim50": fid_ddim, "fid_ddpm1000": fid_ddpm, "fid_ratio": fid_ddim / fid_ddpm,
            "fid_within_20pct": bool(fid_ddim <= 1.2 * fid_ddpm), "n_samples": N_SAMPLES}


def ddim_loop_vs_diffusers_pipeline() -> dict:
    import diffusers

    from deepatlas.diffusion.reference import to_diffusers
    from deepatlas.diffusion.sampling import sample
    from deepatlas.diffusion.schedule import NoiseSchedule
    from deepatlas.models.unet import UNet, UNetConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ours_net = UNet(UNetConfig(channels=(16, 32), attention=(False, True), groups=8, head_dim=8)).eval()
    twin = to_diffusers(ours_net, 14)
    steps, batch = 50, 16
    schedule = NoiseSchedule(1000, "linear")
    pipe = diffusers.DDIMPipeline(unet=twin, scheduler=diffusers.DDIMScheduler(num_train_timesteps=1000,
                                                                               clip_sample=True))
    pipe.set_progress_bar_config(disable=True)
    net = lambda x, t: twin(x, t).sample                                       # noqa: E731
    res: dict[str, torch.Tensor] = {}

    def ours():
        x, _ = sample(net, schedule, (batch, 1, 14, 14), "ddim", steps, generator=torch.Generator().manual_seed(0),
                      clipped_eps=True)
        res["ours"] = x

    def peer():
        with torch.no_grad():
            res["peer"] = pipe(batch_size=batch, generator=torch.Generator().manual_seed(0), eta=0.0,
                               num_inference_steps=steps, output_type="np", use_clipped_model_output=True).images
    ours()
    peer()
    # the pipeline maps [-1, 1] to [0, 1] and to (B, H, W, C); same starting noise -> same images
    got = torch.as_tensor(res["peer"]).permute(0, 3, 1, 2)
    if not torch.allclose((res["ours"] / 2 + 0.5).clamp(0, 1), got, atol=1e-4):
        raise AssertionError("our DDIM loop and DDIMPipeline gave different images from the same noise")
    t = interleaved_median_times({"ours": ours, "peer": peer}, warmup=1, repeats=3)
    return result("ddim_loop_vs_diffusers_pipeline", "s/step", t["ours"] / steps, t["peer"] / steps,
                  "diffusers DDIMPipeline, same UNet2DModel", goal=1.0)


BENCHMARKS = [ddim50_vs_ddpm1000, ddim_loop_vs_diffusers_pipeline]
