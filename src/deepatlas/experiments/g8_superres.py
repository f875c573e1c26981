"""G8: SR3-style super-resolution (Saharia et al. 2021) — a diffusion model of the high-resolution
image conditioned on the low-resolution one (diffusion/superres.py).

Full setting: Fashion-MNIST 14×14 -> 28×28 (quick: the 8×8 digits from 4×4). The U-Net reads
[x_t, bicubic up(x_low)] and predicts ε; sampling is the DDPM chain (strided) with the condition
fixed. Measured on test images against the bicubic upsampling of the same low-resolution input:
  * consistency: the sample, area-downsampled again, matches the low-resolution input (MSE);
  * realism: FID (deepatlas's own classifier features at the high resolution; not Inception, not
    comparable to published FIDs) of the samples vs of the bicubic images, against real
    high-resolution test images.
Held when SR3's FID is below bicubic's and its downsampled MSE to the input is below the MSE of
the bicubic image to the truth (it stays faithful to what it was given).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.data.images import generative_images, image_grid
from deepatlas.diffusion.schedule import NoiseSchedule
from deepatlas.diffusion.superres import downsample, sr3_unet, super_resolve, train_sr3, upsample
from deepatlas.metrics.features import feature_network, score_samples


@dataclass
class Config:
    data: str = "fashion"
    size: int = 28                  # high resolution; the input is size/2
    T: int = 1000
    steps: int = 600                # training steps
    batch: int = 16
    sample_steps: int = 50          # strided DDPM steps when sampling
    n_eval: int = 100
    n_real: int = 1000
    seed: int = 0


@experiment("G8", "superres",
            claim="an SR3-style diffusion model conditioned on the 2× downsampled image produces high-resolution "
                  "samples with lower FID (own features) than bicubic upsampling while staying consistent with its "
                  "low-resolution input",
            config=Config, one_thread=True,
            quick={"data": "digits", "size": 8, "T": 200, "steps": 250, "batch": 32, "sample_steps": 25, "n_eval": 60,
                   "n_real": 250},
            headline={"fid_sr3": ("FID SR3", "{:.1f}"), "fid_bicubic": ("FID bicubic", "{:.1f}"),
                      "consistency_mse": ("down(SR3) vs input MSE", "{:.4f}")})
def superres(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_train, _ = generative_images(cfg.data, "train", cfg.size)
    x_test, _ = generative_images(cfg.data, "test", cfg.size)
    schedule = NoiseSchedule(cfg.T, "linear")
    torch.manual_seed(cfg.seed)
    model = sr3_unet()
    losses = train_sr3(model, schedule, x_train, cfg.steps, cfg.batch, seed=cfg.seed)
    run.print(f"SR3 loss {losses[0]:.3f} -> {sum(losses[-20:]) / 20:.3f}")
    truth = x_test[cfg.n_real:cfg.n_real + cfg.n_eval]
    low = downsample(truth)
    with torch.no_grad():
        sr = super_resolve(model, schedule, low, cfg.size, "ddpm", cfg.sample_steps,
                           torch.Generator().manual_seed(cfg.seed + 1))
    bicubic = upsample(low, cfg.size)
    net, net_acc = feature_network(cfg.size, cfg.data)
    real = x_test[:cfg.n_real]
    s_sr, s_bi = score_samples(net, sr, real), score_samples(net, bicubic, real)
    s_truth = score_samples(net, truth, real)
    consistency = (downsample(sr) - low).pow(2).mean().item()
    bicubic_err = (bicubic - truth).pow(2).mean().item()
    sr_err = (sr - truth).pow(2).mean().item()
    run.print(f"FID SR3 {s_sr.fid:.1f} vs bicubic {s_bi.fid:.1f} (truth {s_truth.fid:.1f}); down(SR3) vs input "
              f"{consistency:.4f}; MSE to truth SR3 {sr_err:.4f}, bicubic {bicubic_err:.4f}")

    fig, ax = plt.subplots(figsize=(6, 8))
    rows = torch.stack([upsample(low, cfg.size), sr, truth], 1)[:10].reshape(-1, 1, cfg.size, cfg.size)
    ax.imshow(image_grid(rows, 3), cmap="gray")
    ax.set(title=f"bicubic (FID {s_bi.fid:.0f}) | SR3 (FID {s_sr.fid:.0f}) | truth")
    ax.axis("off")
    run.savefig(fig, "superres")

    held = s_sr.fid < s_bi.fid and consistency < bicubic_err
    metrics = {"fid_sr3": s_sr.fid, "fid_bicubic": s_bi.fid, "fid_truth": s_truth.fid,
               "kid_sr3": s_sr.kid, "kid_bicubic": s_bi.kid, "consistency_mse": consistency,
               "mse_sr3_to_truth": sr_err, "mse_bicubic_to_truth": bicubic_err,
               "loss_first": losses[0], "loss_last": sum(losses[-20:]) / 20, "feature_net_test_accuracy": net_acc}
    notes = (f"{cfg.size // 2}×{cfg.size // 2} -> {cfg.size}×{cfg.size}: FID SR3 {s_sr.fid:.1f} vs bicubic "
             f"{s_bi.fid:.1f} (held-out truth {s_truth.fid:.1f}); MSE to the truth SR3 {sr_err:.4f} vs bicubic "
             f"{bicubic_err:.4f} (SR3 samples one plausible image rather than the blurred average).")
    return Verdict(held=held, metrics=metrics, notes=notes)
