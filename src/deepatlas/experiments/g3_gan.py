"""G3: GANs (Goodfellow et al. 2014) — the saturating loss, mode collapse and its cure, DCGAN with FID.

Built: models/gan.py (minimax / non-saturating / Wasserstein losses, WGAN-GP's gradient penalty,
minibatch-std discriminator, MLP and DCGAN networks, the 8-Gaussian ring and its mode counter),
metrics/ (FID, KID, an Inception-Score-style score, precision/recall on deepatlas's own
Fashion-MNIST classifier: no Inception weights offline, so these FIDs rank this project's models
and are NOT comparable to published numbers).

Measured:
  1. the generator's gradient when D is confident: D is trained against a fixed untrained G on the
     ring until D(G(z)) ≈ 0; then ‖∇_θ L_G‖ of the minimax loss log(1 − D) is far smaller than the
     non-saturating −log D's (Goodfellow et al. §3), plotted with dL/dlogit against D(G(z));
  2. the metrics themselves: our Fréchet trace term equals scipy's sqrtm on real feature
     covariances; FID(test, test) = 0, FID between two disjoint test halves is small, and FID
     rises monotonically as Gaussian noise of growing σ is added to one half;
  3. mode collapse on the 8-Gaussian ring: a GAN with the non-saturating loss and Adam β₁ = 0.9
     (the "collapsing" setting) against WGAN-GP (λ = 0.1 as in Gulrajani et al.'s toy code, 5
     critic steps, β = (0.5, 0.9)) with the same generator: modes covered and high-quality
     fraction;
  4. a DCGAN (non-saturating loss, β₁ = 0.5, Radford et al. 2016) on 14×14 Fashion-MNIST: FID,
     KID, IS-style score and precision/recall of its samples over training.
Held when the minimax gradient is < 10 % of the non-saturating one, the FID checks hold, the cured
ring covers more modes than the collapsing one (full: ≥ 7 of 8 vs ≤ 4), and DCGAN's final FID is
below half its untrained FID and below its first measurement.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.data.images import fashion_images, image_grid
from deepatlas.metrics.features import embed, feature_network, score_samples
from deepatlas.metrics.fid import fid, frechet_distance, gaussian_stats
from deepatlas.models.gan import (DCDiscriminator, DCGenerator, MLPDiscriminator, MLPGenerator,
                                  discriminator_loss, generator_loss, ring_modes_covered, ring_of_gaussians, train_gan)


@dataclass
class Config:
    ring_steps: int = 800           # generator updates of each ring GAN
    ring_z: int = 16
    ring_batch: int = 128
    confident_steps: int = 200      # D updates against a fixed G before measuring G's gradient
    dcgan_steps: int = 1500
    dcgan_batch: int = 64
    eval_every: int = 500
    n_eval: int = 500               # DCGAN samples per FID measurement
    n_real: int = 1000
    noise_levels: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)
    seed: int = 0


def confident_gradients(cfg: Config) -> dict:
    """Train D against an untrained, fixed G; then ‖∇_θG‖ of each generator loss on one batch."""
    torch.manual_seed(cfg.seed)
    gen, disc = MLPGenerator(cfg.ring_z, 2), MLPDiscriminator(2)
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.999))
    for _ in range(cfg.confident_steps):
        with torch.no_grad():
            fake = gen(torch.randn(cfg.ring_batch, cfg.ring_z, generator=g))
        loss = discriminator_loss(disc(ring_of_gaussians(cfg.ring_batch, generator=g)), disc(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = torch.randn(512, cfg.ring_z, generator=g)
    out = {}
    for kind in ("minimax", "non_saturating"):
        gen.zero_grad()
        generator_loss(disc(gen(z)), kind).backward()
        out[kind] = float(torch.sqrt(sum(p.grad.pow(2).sum() for p in gen.parameters())))
    with torch.no_grad():
        out["d_fake_mean"] = float(torch.sigmoid(disc(gen(z))).mean())
    return out


def ring_run(cfg: Config, setting: str) -> tuple[torch.Tensor, tuple[int, float]]:
    torch.manual_seed(cfg.seed)
    gen, disc = MLPGenerator(cfg.ring_z, 2), MLPDiscriminator(2)

    def real(n: int, g: torch.Generator) -> torch.Tensor:
        return ring_of_gaussians(n, generator=g)

    if setting == "collapsing":
        train_gan(gen, disc, real, cfg.ring_steps, "non_saturating", cfg.ring_batch, 1e-3, (0.9, 0.999), seed=cfg.seed)
    else:  # WGAN-GP
        train_gan(gen, disc, real, cfg.ring_steps, "wasserstein", cfg.ring_batch, 1e-3, (0.5, 0.9), n_critic=5,
                  gp_weight=0.1, seed=cfg.seed)
    with torch.no_grad():
        x = gen(torch.randn(2000, cfg.ring_z, generator=torch.Generator().manual_seed(cfg.seed + 9)))
    return x, ring_modes_covered(x)


def fid_checks(net, real: torch.Tensor, levels: tuple[float, ...], seed: int) -> dict:
    """Scipy parity of the trace term, FID(a, a), FID(a, b) and FID against noised b."""
    half = len(real) // 2
    a, b = real[:half], real[half:2 * half]
    fa, _ = embed(net, a)
    fb, _ = embed(net, b)
    mu_a, s_a = gaussian_stats(fa)
    mu_b, s_b = gaussian_stats(fb)
    out: dict = {"fid_same_set": fid(fa, fa), "fid_two_halves": fid(fa, fb)}
    try:
        from scipy import linalg
        covmean = np.real(linalg.sqrtm(s_a.numpy() @ s_b.numpy()))
        want = float(((mu_a - mu_b) ** 2).sum()) + float(np.trace(s_a.numpy() + s_b.numpy() - 2 * covmean))
        out["fid_vs_scipy_rel"] = abs(frechet_distance(mu_a, s_a, mu_b, s_b) - want) / max(abs(want), 1e-12)
    except ImportError:
        out["fid_vs_scipy_rel"] = float("nan")
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(b.shape, generator=g)
    out["noise_levels"] = list(levels)
    out["fid_vs_noise"] = [fid(fa, embed(net, (b + s * noise).clamp(-1, 1))[0]) for s in levels]
    return out


@experiment("G3", "gan",
            claim="the minimax generator loss saturates when D is confident (gradient < 10% of the non-saturating "
                  "loss's); WGAN-GP covers the 8-Gaussian ring where a collapsing GAN does not; a DCGAN's FID (own "
                  "features, = scipy's Fréchet distance, 0 for a set against itself and rising with noise) falls over "
                  "training on 14×14 Fashion-MNIST",
            config=Config, one_thread=True,
            quick={"ring_steps": 250, "ring_batch": 64, "confident_steps": 100, "dcgan_steps": 80, "eval_every": 40,
                   "n_eval": 150,
                   "n_real": 400, "noise_levels": "0.0,0.2,0.8"},
            headline={"grad_ratio": ("minimax / non-saturating ‖∇G‖", "{:.1e}"),
                      "modes_collapsing": ("ring modes, collapsing", "{}"), "modes_cured": ("ring modes, WGAN-GP", "{}"),
                      "fid_final": ("DCGAN FID", "{:.1f}"), "fid_untrained": ("untrained", "{:.1f}")})
def gan(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # 1. the saturating loss
    grads = confident_gradients(cfg)
    grad_ratio = grads["minimax"] / grads["non_saturating"]
    run.print(f"D(G(z)) = {grads['d_fake_mean']:.4f}: ‖∇G‖ minimax {grads['minimax']:.2e}, "
              f"non-saturating {grads['non_saturating']:.2e}")

    # 2. the metrics
    net, net_acc = feature_network(14)
    real, _ = fashion_images("test", 14)
    checks = fid_checks(net, real[:cfg.n_real], cfg.noise_levels, cfg.seed)
    run.print(f"FID same set {checks['fid_same_set']:.2e}, halves {checks['fid_two_halves']:.2f}, "
              f"noise {['%.1f' % v for v in checks['fid_vs_noise']]}, scipy rel {checks['fid_vs_scipy_rel']:.1e}")
    noise_fids = checks["fid_vs_noise"]
    fid_ok = (checks["fid_same_set"] < 1e-6 and all(x < y for x, y in zip(noise_fids, noise_fids[1:]))
              and checks["fid_two_halves"] < 0.2 * noise_fids[-1]
              and not checks["fid_vs_scipy_rel"] > 1e-5)

    # 3. mode collapse on the ring
    ring = ring_of_gaussians(2000, generator=torch.Generator().manual_seed(cfg.seed + 5))
    x_col, (modes_col, good_col) = ring_run(cfg, "collapsing")
    x_cur, (modes_cur, good_cur) = ring_run(cfg, "wgan_gp")
    run.print(f"ring: collapsing {modes_col}/8 modes ({good_col:.0%} high quality), "
              f"WGAN-GP {modes_cur}/8 ({good_cur:.0%})")

    # 4. DCGAN on Fashion-MNIST with FID over training
    x_train, _ = fashion_images("train", 14)
    real_eval = real[:cfg.n_real]
    torch.manual_seed(cfg.seed)
    gen, disc = DCGenerator(32), DCDiscriminator()
    z_eval = torch.randn(cfg.n_eval, 32, generator=torch.Generator().manual_seed(cfg.seed + 1))

    def measure(step: int) -> dict:
        gen.eval()
        with torch.no_grad():
            s = score_samples(net, gen(z_eval), real_eval)
        gen.train()
        run.log(step=step, **s.as_dict())
        run.print(f"  DCGAN step {step}: FID {s.fid:.1f}  KID {s.kid:.3f}  IS {s.inception_score:.2f}  "
                  f"P {s.precision:.2f} R {s.recall:.2f}")
        return {"step": step, **s.as_dict()}

    curve = [measure(0)]

    def real_batch(n: int, g: torch.Generator) -> torch.Tensor:
        return x_train[torch.randint(0, len(x_train), (n,), generator=g)]

    def on_step(step: int) -> None:
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.dcgan_steps:
            curve.append(measure(step + 1))

    history = train_gan(gen, disc, real_batch, cfg.dcgan_steps, "non_saturating", cfg.dcgan_batch, 2e-4,
                        (0.5, 0.999), seed=cfg.seed, on_step=on_step)
    gen.eval()
    fids = [e["fid"] for e in curve]
    final = curve[-1]

    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    p = np.linspace(1e-4, 1 - 1e-4, 200)
    axes[0, 0].plot(p, p, label="minimax: |∂L/∂logit| = D")
    axes[0, 0].plot(p, 1 - p, label="non-saturating: 1 − D")
    axes[0, 0].axvline(grads["d_fake_mean"], color="grey", ls=":", label=f"trained D: {grads['d_fake_mean']:.3f}")
    axes[0, 0].set(xlabel="D(G(z))", ylabel="|∂L_G/∂logit|", xscale="log", title="generator gradient")
    axes[0, 0].legend(fontsize=8)
    axes[0, 1].plot(checks["noise_levels"], noise_fids, "o-")
    axes[0, 1].axhline(checks["fid_two_halves"], color="grey", ls=":", label="two test halves")
    axes[0, 1].set(xlabel="σ of added noise", ylabel="FID (own features)", title="FID vs noise")
    axes[0, 1].legend(fontsize=8)
    axes[0, 2].plot([e["step"] for e in curve], fids, "o-")
    axes[0, 2].set(xlabel="generator step", ylabel="FID", yscale="log", title="DCGAN FID over training")
    for ax, x, title in ((axes[1, 0], x_col, f"non-saturating, β₁=0.9: {modes_col}/8 modes"),
                         (axes[1, 1], x_cur, f"WGAN-GP: {modes_cur}/8 modes")):
        ax.scatter(ring[:, 0], ring[:, 1], s=2, c="lightgrey")
        ax.scatter(x[:, 0], x[:, 1], s=2, c="C3")
        ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", title=title)
    with torch.no_grad():
        axes[1, 2].imshow(image_grid(gen(z_eval[:64]), 8), cmap="gray")
    axes[1, 2].set(title=f"DCGAN samples, FID {final['fid']:.1f}")
    axes[1, 2].axis("off")
    run.savefig(fig, "gan")

    need_cured, max_collapsed = (7, 4) if not run.quick else (modes_col + 1, 8)
    ring_ok = modes_cur >= need_cured and modes_col <= max_collapsed
    dcgan_ok = fids[-1] < 0.5 * fids[0] and fids[-1] < fids[1 if len(fids) > 2 else 0]
    held = grad_ratio < 0.1 and fid_ok and ring_ok and dcgan_ok
    metrics = {"grad_minimax": grads["minimax"], "grad_non_saturating": grads["non_saturating"],
               "grad_ratio": grad_ratio, "d_fake_mean": grads["d_fake_mean"],
               **{k: v for k, v in checks.items()},
               "modes_collapsing": modes_col, "quality_collapsing": good_col,
               "modes_cured": modes_cur, "quality_cured": good_cur,
               "fid_untrained": fids[0], "fid_curve": fids, "fid_steps": [e["step"] for e in curve],
               "fid_final": final["fid"], "kid_final": final["kid"], "is_final": final["inception_score"],
               "precision_final": final["precision"], "recall_final": final["recall"],
               "d_loss_last": history[-1][0], "g_loss_last": history[-1][1], "feature_net_test_accuracy": net_acc}
    notes = (f"minimax/NS gradient {grad_ratio:.1e} at D(G(z)) = {grads['d_fake_mean']:.3f}; ring {modes_col} vs "
             f"{modes_cur} of 8 modes; DCGAN FID {fids[0]:.1f} -> {final['fid']:.1f} ({cfg.dcgan_steps} steps, "
             f"{cfg.n_eval} samples; two test halves {checks['fid_two_halves']:.1f}). Features: deepatlas's own 14×14 "
             "Fashion-MNIST classifier, not Inception — not comparable to published FIDs.")
    return Verdict(held=held, metrics=metrics, notes=notes)
