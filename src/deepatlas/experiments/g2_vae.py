"""G2: a VAE on Fashion-MNIST — the ELBO is a lower bound, β trades reconstruction for KL, the
latent space is a smooth generative space.

Built: models/vae.py (Gaussian encoder, Bernoulli decoder, reparameterisation, closed-form KL,
β-weighted ELBO, importance-weighted log-likelihood).

Measured on test images with the β = 1 model:
  * the closed-form KL of the encoder's outputs equals torch.distributions' (|Δ| recorded) and a
    Monte-Carlo estimate (within 4 standard errors);
  * ELBO ≤ the importance-weighted estimate of log p(x) (Burda et al. 2016, K samples);
  * ELBO terms over training (reconstruction and KL, logged), samples from the prior, and a
    latent walk between two test images, whose decoded frames change evenly (largest step ≤ 3×
    the mean step) rather than jumping;
  * β ∈ betas: KL falls and reconstruction error rises as β grows (Higgins et al. 2017).
Held when all four hold.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Normal, kl_divergence

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.data.images import fashion_images, image_grid
from deepatlas.models.vae import VAE, gaussian_kl, train_vae


@dataclass
class Config:
    k: int = 16
    steps: int = 4000
    betas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    n_test: int = 1000
    iw_samples: int = 100       # K of the importance-weighted log-likelihood
    walk_frames: int = 10
    seed: int = 0


def _flat01(split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = fashion_images(split, 28, n)
    return ((x + 1) / 2).reshape(len(x), -1), y


@experiment("G2", "vae",
            claim="a VAE on Fashion-MNIST: closed-form KL = torch.distributions' = Monte Carlo, ELBO ≤ an "
                  "importance-weighted log-likelihood on test images, an even latent walk, and larger β gives lower "
                  "KL and higher reconstruction error",
            config=Config, one_thread=True,
            quick={"steps": 300, "betas": "0.5,1.0,4.0", "n_test": 200, "iw_samples": 30},
            headline={"test_elbo": ("test ELBO", "{:.1f} nats"), "test_iw_log_likelihood": ("IW log p(x)", "{:.1f} nats"),
                      "kl_at_beta_max": ("KL at the largest β", "{:.1f}"), "kl_at_beta_1": ("KL at β = 1", "{:.1f}")})
def vae(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, _ = _flat01("train")
    xt, _ = _flat01("test", cfg.n_test)
    if 1.0 not in cfg.betas:
        raise ValueError(f"betas {cfg.betas} must include 1.0 (the ELBO itself)")
    models, curves, rec_err, kls = {}, {}, {}, {}
    g = torch.Generator().manual_seed(cfg.seed + 1)
    for beta in cfg.betas:
        curve = []
        model = VAE(784, cfg.k)
        train_vae(model, x, cfg.steps, beta=beta, seed=cfg.seed,
                  log=lambda s, r, k, c=curve, b=beta: (c.append((s, r, k)), run.log(beta=b, step=s, rec=r, kl=k)))
        models[beta], curves[beta] = model.eval(), curve
        with torch.no_grad():
            rec, kl = model.elbo_terms(xt, g)
        rec_err[beta], kls[beta] = float(-rec.mean()), float(kl.mean())
        run.print(f"  β={beta}: −log p(x|z) {rec_err[beta]:.1f}  KL {kls[beta]:.1f}")

    m1 = models[1.0]
    with torch.no_grad():
        mu, logvar = m1.encode(xt)
        kl_ours = gaussian_kl(mu, logvar)
        q = Normal(mu, (0.5 * logvar).exp())
        kl_torch = kl_divergence(q, Normal(0.0, 1.0)).sum(-1)
        z = q.sample((200,))                                                         # (200, N, k)
        kl_mc_samples = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1)
        kl_mc, kl_se = kl_mc_samples.mean(0), kl_mc_samples.std(0) / 200 ** 0.5
        rec, kl = zip(*[m1.elbo_terms(xt, g) for _ in range(10)])
        elbo = (torch.stack(rec) - torch.stack(kl)).mean(0)                           # (N,)
        iw = m1.importance_log_likelihood(xt, cfg.iw_samples, g)
    kl_vs_torch = float((kl_ours - kl_torch).abs().max())
    kl_mc_ok = float(((kl_mc - kl_ours).abs() <= 4 * kl_se + 1e-3).float().mean())
    bound_fraction = float((elbo <= iw + 1e-3).float().mean())

    # latent walk between two test images of different classes, through their means
    with torch.no_grad():
        a, b = mu[0], mu[1]
        path = torch.stack([a + (b - a) * s for s in torch.linspace(0, 1, cfg.walk_frames)])
        frames = m1.decode(path).sigmoid()                                           # (F, 784)
        samples = m1.sample(64, torch.Generator().manual_seed(cfg.seed + 2))
    steps = (frames[1:] - frames[:-1]).norm(dim=1)
    walk_ratio = float(steps.max() / steps.mean())

    fig, ax = plt.subplots(1, 4, figsize=(15, 3.8))
    for beta, c in curves.items():
        s_, r_, k_ = zip(*c)
        ax[0].plot(s_, r_, label=f"−E log p(x|z), β={beta}")
        ax[0].plot(s_, k_, "--", label=f"KL, β={beta}")
    ax[0].set(xlabel="step", ylabel="nats per image", title="ELBO terms over training", yscale="log")
    ax[0].legend(fontsize=6)
    bs = list(cfg.betas)
    ax[1].plot([rec_err[b] for b in bs], [kls[b] for b in bs], "o-")
    for b in bs:
        ax[1].annotate(f"β={b}", (rec_err[b], kls[b]), fontsize=8)
    ax[1].set(xlabel="reconstruction −log p(x|z)", ylabel="KL(q ‖ p)", title="β trades KL for reconstruction")
    to_pm1 = lambda t: t.reshape(-1, 1, 28, 28) * 2 - 1
    ax[2].imshow(image_grid(to_pm1(samples), 8), cmap="gray"), ax[2].axis("off"), ax[2].set_title("samples, z ~ N(0, I)")
    ax[3].imshow(image_grid(to_pm1(frames), cfg.walk_frames), cmap="gray"), ax[3].axis("off")
    ax[3].set_title(f"latent walk (max/mean step {walk_ratio:.2f})", fontsize=9)
    run.savefig(fig, "vae")

    kl_falls = all(kls[b2] < kls[b1] for b1, b2 in zip(bs, bs[1:]))
    rec_rises = all(rec_err[b2] > rec_err[b1] for b1, b2 in zip(bs, bs[1:]))
    checks = {"kl_closed_form": kl_vs_torch < 1e-4 and kl_mc_ok >= 0.95, "elbo_below_iw": bound_fraction >= 0.9
              and float((iw - elbo).mean()) > 0, "walk_even": walk_ratio <= 3.0, "beta_trade": kl_falls and rec_rises}
    metrics = {"kl_max_abs_vs_torch": kl_vs_torch, "kl_within_4se_of_monte_carlo": kl_mc_ok,
               "test_elbo": float(elbo.mean()), "test_iw_log_likelihood": float(iw.mean()),
               "fraction_elbo_below_iw": bound_fraction, "walk_max_over_mean_step": walk_ratio,
               "betas": bs, "reconstruction_nats": [rec_err[b] for b in bs], "kl_nats": [kls[b] for b in bs],
               "kl_at_beta_1": kls[1.0], "kl_at_beta_max": kls[bs[-1]], "checks": checks}
    notes = (f"test ELBO {metrics['test_elbo']:.1f} ≤ IW-{cfg.iw_samples} log p(x) {metrics['test_iw_log_likelihood']:.1f} "
             f"nats ({bound_fraction:.0%} of images); KL {kls[bs[0]]:.1f} -> {kls[bs[-1]]:.1f} and reconstruction "
             f"{rec_err[bs[0]]:.1f} -> {rec_err[bs[-1]]:.1f} nats from β={bs[0]} to β={bs[-1]}; "
             + "; ".join(f"{k}={'yes' if v else 'NO'}" for k, v in checks.items()))
    return Verdict(held=all(checks.values()), metrics=metrics, notes=notes)
