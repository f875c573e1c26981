"""G7: DDPM (Ho, Jain & Abbeel 2020) on 14×14 Fashion-MNIST — schedulers equal diffusers', FID falls.

Built: diffusion/schedule.py (linear and cosine β, closed-form q(x_t | x_0) of eq. 4, ε / x_0 / v
targets and their conversions), diffusion/samplers.py (the reverse step, eq. 6–7), the U-Net of
models/unet.py (residual blocks, sinusoidal time embedding, self-attention at 7×7, skips).

Shown here:
  1. parity: our β, ᾱ, add_noise and a full 1000-step DDPM chain with a fixed fake network equal
     diffusers' DDPMScheduler for both schedules (max |difference| recorded; skipped if diffusers
     is not installed);
  2. an ε-prediction U-Net trained with L_simple (Algorithm 1); every eval_every steps 200 DDIM-50
     samples are scored against test images by FID on deepatlas's own Fashion-MNIST classifier
     (metrics.features; no Inception weights offline, so the numbers are not comparable to
     published FIDs), and the final model samples with the full 1000-step DDPM chain
     (Algorithm 2), shown step by step.
Held when the parity differences are < 1e-5, the final DDPM FID is under half the FID of the
untrained network's samples, and FID at the end of training is below its first measurement.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.data.images import fashion_images, image_grid
from deepatlas.diffusion.fashion import DDPMSetup, generate, make_unet, train_ddpm
from deepatlas.diffusion.samplers import ddpm_step
from deepatlas.diffusion.sampling import guided_denoiser, sample
from deepatlas.diffusion.schedule import NoiseSchedule
from deepatlas.metrics.features import feature_network, score_samples


@dataclass
class Config:
    ddpm: DDPMSetup = field(default_factory=DDPMSetup)
    n_eval: int = 200              # DDIM-50 samples per FID measurement during training
    eval_steps: int = 50
    n_final: int = 100             # samples of the final DDPM chain
    final_steps: int = 1000        # DDPM steps of the final chain (= T: Algorithm 2)
    n_real: int = 1000             # test images the samples are compared with
    seed: int = 0


def diffusers_parity(T: int = 1000) -> float | None:
    """max |ours − diffusers| over β, ᾱ, add_noise and a 1000-step DDPM chain (None: no diffusers)."""
    try:
        from diffusers import DDPMScheduler
    except ImportError:
        return None
    worst = 0.0
    for kind, name in (("linear", "linear"), ("cosine", "squaredcos_cap_v2")):
        ours, ref = NoiseSchedule(T, kind), DDPMScheduler(num_train_timesteps=T, beta_schedule=name)
        g = torch.Generator().manual_seed(0)
        x0, eps = torch.randn(4, 1, 6, 6, generator=g), torch.randn(4, 1, 6, 6, generator=g)
        t = torch.tensor([0, 10, 500, T - 1])
        worst = max(worst, (ours.alphas_cumprod - ref.alphas_cumprod).abs().max().item(),
                    (ours.add_noise(x0, eps, t) - ref.add_noise(x0, eps, t)).abs().max().item())
        a = b = torch.randn(4, 1, 6, 6, generator=g)
        for step in range(T - 1, -1, -1):
            a = ref.step(torch.tanh(a), step, a, generator=torch.Generator().manual_seed(step)).prev_sample
            b, _ = ddpm_step(ours, torch.tanh(b), step, b, generator=torch.Generator().manual_seed(step))
        worst = max(worst, (a - b).abs().max().item())
    return worst


@experiment("G7", "ddpm",
            claim="our DDPM schedules and reverse steps equal diffusers' (|Δ| < 1e-5), and a small U-Net trained with "
                  "L_simple on 14×14 Fashion-MNIST samples with the 1000-step chain at under half the FID "
                  "(own classifier features) of the untrained network, FID falling over training",
            config=Config, one_thread=True,
            quick={"ddpm.train.steps": 150, "ddpm.train.eval_every": 75, "ddpm.train.warmup": 10,
                   "ddpm.batch_size": 24, "ddpm.train.checkpoint_every": 0, "n_eval": 48, "eval_steps": 10,
                   "n_final": 32, "final_steps": 50, "n_real": 300},
            headline={"fid_final": ("FID, 1000-step DDPM", "{:.1f}"), "fid_untrained": ("untrained", "{:.1f}"),
                      "fid_real_vs_real": ("real vs real", "{:.1f}"), "parity_max_abs": "{:.1e}"})
def ddpm(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parity = diffusers_parity()
    net, net_acc = feature_network(cfg.ddpm.size)
    real, _ = fashion_images("test", cfg.ddpm.size)
    real_a, real_b = real[:cfg.n_real], real[cfg.n_real:2 * cfg.n_real]
    floor = score_samples(net, real_b[:cfg.n_eval], real_a).fid   # what FID reads for real images at this n

    def evaluate(model) -> dict:
        x = generate(model, schedule, cfg.ddpm, cfg.n_eval, "ddim", cfg.eval_steps, seed=cfg.seed + 1)
        s = score_samples(net, x, real_a)
        run.print(f"  FID {s.fid:.1f}  KID {s.kid:.3f}")
        return {"fid": s.fid, "kid": s.kid}

    schedule = NoiseSchedule(cfg.ddpm.T, cfg.ddpm.schedule)
    torch.manual_seed(cfg.seed)
    untrained = evaluate(make_unet(cfg.ddpm).eval())
    model, schedule, result = train_ddpm(cfg.ddpm, run, evaluate, seed=cfg.seed)
    curve = [{"step": 0, **untrained}] + result.evals

    # the final chain (Algorithm 2), with x̂_0 kept at a few steps to show the reverse process
    g = torch.Generator().manual_seed(cfg.seed + 2)
    keep = tuple(int(t) for t in torch.linspace(cfg.ddpm.T - 1, 0, 6).round().long())
    show, kept = sample(guided_denoiser(model), schedule, (8, 1, cfg.ddpm.size, cfg.ddpm.size), "ddpm",
                        steps=cfg.final_steps, generator=g, keep=keep if cfg.final_steps == cfg.ddpm.T else ())
    final_x = torch.cat([show, generate(model, schedule, cfg.ddpm, cfg.n_final - 8, "ddpm", cfg.final_steps,
                                        seed=cfg.seed + 3)])
    final = score_samples(net, final_x, real_a)

    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    axes[0].plot([e["step"] for e in curve], [e["fid"] for e in curve], "o-", label=f"DDIM-{cfg.eval_steps} samples")
    axes[0].axhline(final.fid, color="C1", ls="--", label=f"final, DDPM-{cfg.final_steps}")
    axes[0].axhline(floor, color="grey", ls=":", label="real vs real")
    axes[0].set(xlabel="training step", ylabel="FID (own features)", yscale="log", title="FID over training")
    axes[0].legend(fontsize=8)
    axes[1].imshow(image_grid(final_x[:64], 8), cmap="gray")
    axes[1].set(title=f"DDPM-{cfg.final_steps} samples"), axes[1].axis("off")
    if kept:
        rows = torch.stack([kept[t] for t in keep] + [show], dim=1).reshape(-1, 1, cfg.ddpm.size, cfg.ddpm.size)
        axes[2].imshow(image_grid(rows, len(keep) + 1), cmap="gray")
        axes[2].set(title="x̂₀ along the chain: t = " + ", ".join(map(str, keep)) + ", x₀")
    axes[2].axis("off")
    run.savefig(fig, "ddpm")

    fids = [e["fid"] for e in curve]
    parity_ok = parity is None or parity < 1e-5
    held = parity_ok and final.fid < 0.5 * untrained["fid"] and fids[-1] < fids[1 if len(fids) > 2 else 0]
    metrics = {"parity_max_abs": parity if parity is not None else float("nan"),
               "fid_untrained": untrained["fid"], "fid_curve": fids, "fid_steps": [e["step"] for e in curve],
               **final.as_dict("final_"), "fid_final": final.fid, "fid_real_vs_real": floor,
               "feature_net_test_accuracy": net_acc, "train_loss_first": result.losses[0],
               "train_loss_last": sum(result.losses[-20:]) / len(result.losses[-20:]),
               "train_seconds": result.seconds}
    notes = (f"FID {untrained['fid']:.1f} untrained -> {final.fid:.1f} after {result.step} steps "
             f"(DDPM-{cfg.final_steps}, {len(final_x)} samples; real-vs-real {floor:.1f} at {cfg.n_eval}); "
             f"diffusers parity {parity if parity is not None else 'skipped (not installed)'}. "
             "Features: deepatlas's own 14×14 classifier, not Inception: not comparable to published FIDs.")
    return Verdict(held=held, metrics=metrics, notes=notes)
