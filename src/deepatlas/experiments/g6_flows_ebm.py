"""G6: normalising flows and energy-based models — an exact likelihood by change of variables, and a
density known only up to Z, sampled by Langevin dynamics.

Built: models/flow.py (RealNVP: affine couplings with checkerboard and channel masks, squeeze,
multi-scale factoring-out, logit preprocessing, uniform dequantisation, bits/dim) and
models/ebm.py (Langevin dynamics, a Gaussian-mixture energy with a known density, MLP and conv
energies, contrastive divergence with a replay buffer).

Data: scikit-learn's 8×8 digits, whose pixels are integers 0..16 (17 levels, D = 64). Both models
bound the same discrete probability P(k) of the test digits:
  * the flow by uniform dequantisation, log P(k) ≥ E_u log p(k + u) (Theis et al. 2016);
  * the VAE (models/vae.py, the same encoder/decoder, with its Bernoulli likelihood replaced by the
    Binomial(16, p) distribution over the 17 levels) by its ELBO, and more tightly by Burda et al.'s
    importance-weighted bound.
Measured:
  1. the flow's summed coupling log-dets equal log|det| of autograd's full 64×64 Jacobian of the
     trained flow, and inverse(forward(x)) = x;
  2. test bits/dim of the flow vs the VAE's ELBO (and IW) bits/dim; samples at temperatures T,
     scored by FID on the project's own digits classifier (metrics.features);
  3. Langevin dynamics on a known 3-component 2-D Gaussian mixture: the chains' histogram is as
     close (total variation) to the exact density as exact samples of the same size (+ tolerance),
     and their mean and covariance match the mixture's;
  4. an MLP energy trained by contrastive divergence with a replay buffer on the 8-Gaussian ring
     (models/gan.py): Langevin chains started from uniform noise reach all 8 modes;
  5. a conv energy trained the same way on the digits: the replay buffer's samples have an FID below
     fid_ratio (0.2; 0.75 in the quick run's 30 steps) times that of the uniform noise it started from.
Held when all five hold.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.data.images import digit_images, image_grid
from deepatlas.metrics.features import embed, feature_network
from deepatlas.metrics.fid import fid
from deepatlas.models.ebm import (ConvEnergy, GaussianMixtureEnergy, MLPEnergy, ReplayBuffer, histogram_tv,
                                  image_noise, langevin, train_ebm, two_d_noise)
from deepatlas.models.flow import RealNVP, bits_per_dim, dequantise, evaluate_bits_per_dim, train_flow
from deepatlas.models.gan import ring_modes_covered, ring_of_gaussians
from deepatlas.models.vae import VAE, train_vae

LEVELS = 17                      # the digits' pixel values 0..16


class BinomialVAE(VAE):
    """models/vae.py's VAE with p(k | z) = Binomial(L − 1, σ(logit)) per pixel, a proper distribution
    over the L levels: log p = k log σ + (L − 1 − k) log(1 − σ) + log C(L − 1, k); x = k/(L − 1)."""

    def __init__(self, d: int, k: int, hidden: tuple[int, ...], levels: int = LEVELS):
        super().__init__(d, k, hidden)
        self.n = levels - 1

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        k, n = x * self.n, float(self.n)
        log_choose = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
        return (k * F.logsigmoid(logits) + (n - k) * F.logsigmoid(-logits) + log_choose).sum(-1)


@dataclass
class Config:
    flow_steps: int = 2000
    flow_hidden: int = 32
    flow_lr: float = 1e-3
    flow_batch: int = 64
    coupling: int = 3
    vae_steps: int = 2000
    vae_k: int = 8
    vae_hidden: int = 256
    iw_samples: int = 100
    temperatures: tuple[float, ...] = (0.5, 0.75, 1.0)
    n_samples: int = 300
    chains: int = 2000             # Langevin check on the known mixture
    chain_steps: int = 1000
    chain_step_size: float = 0.02
    tv_tolerance: float = 0.03
    ebm2d_steps: int = 1000
    ebm_img_steps: int = 600
    langevin_steps: int = 20
    img_step_size: float = 1.0     # short-run λ on ∇E (pixels in [−1, 1]) and noise σ
    img_noise: float = 0.01
    fid_ratio: float = 0.2         # the digits EBM's FID must be below this share of its starting noise's
    seed: int = 0


def _counts(split: str) -> torch.Tensor:
    x, _ = digit_images(split)                                     # (N, 1, 8, 8) in [−1, 1]
    return ((x + 1) / 2 * (LEVELS - 1)).round()                     # integers 0..16


def jacobian_check(flow: RealNVP, x: torch.Tensor) -> tuple[float, float]:
    """(|Σ coupling log-dets − log|det J|| with J autograd's full Jacobian, max |inverse(f(x)) − x|)."""
    flow = flow.double()
    x = x.double()
    worst = 0.0
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: flow(v.reshape(1, *flow.shape))[0].reshape(-1),
                                                 xi.reshape(-1))            # (D, D)
        _, logabs = torch.linalg.slogdet(jac)
        worst = max(worst, abs(float(flow(xi[None])[1][0].detach() - logabs)))
    with torch.no_grad():
        inv = float((flow.inverse(flow(x)[0]) - x).abs().max())
    flow.float()
    return worst, inv


@experiment("G6", "flows-ebm",
            claim="RealNVP's coupling log-dets equal autograd's full-Jacobian log-det on 8×8 digits, and its test bits/dim "
                  "is below the same data's VAE ELBO; Langevin dynamics samples a known 2-D mixture as closely as exact "
                  "samples do; EBMs trained by contrastive divergence with a replay buffer reach all 8 ring modes and "
                  "digit samples far closer (FID) to the data than their starting noise",
            config=Config, one_thread=True,
            quick={"flow_steps": 80, "flow_lr": 5e-3, "flow_batch": 32, "vae_steps": 200, "iw_samples": 20, "n_samples": 200, "chains": 1000,
                   "chain_steps": 300, "chain_step_size": 0.05, "tv_tolerance": 0.05, "ebm2d_steps": 150,
                   "ebm_img_steps": 30, "langevin_steps": 10, "fid_ratio": 0.75},
            headline={"flow_bits_per_dim": ("RealNVP bits/dim", "{:.3f}"), "vae_elbo_bits_per_dim": ("VAE ELBO", "{:.3f}"),
                      "vae_iw_bits_per_dim": ("VAE IW bound", "{:.3f}"), "logdet_vs_autograd": "{:.1e}",
                      "ebm_digits_fid": ("EBM digits FID", "{:.1f}")})
def flows_ebm(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k_train, k_test = _counts("train"), _counts("test")
    D = k_train[0].numel()
    g = torch.Generator().manual_seed(cfg.seed + 1)

    # 1-2. the flow, the Jacobian check, bits/dim, samples by temperature
    t0 = time.perf_counter()
    flow = RealNVP((1, 8, 8), coupling=cfg.coupling, hidden=cfg.flow_hidden)
    flow_curve: list[tuple[int, float]] = []
    train_flow(flow, k_train, LEVELS, cfg.flow_steps, batch=cfg.flow_batch, lr=cfg.flow_lr, seed=cfg.seed,
               log=lambda s, b: (flow_curve.append((s, b)), run.log(model="flow", step=s, bits_per_dim=b)))
    flow.eval()
    flow_bpd = evaluate_bits_per_dim(flow, k_test, LEVELS, generator=g)
    flow_train_bpd = evaluate_bits_per_dim(flow, k_train, LEVELS, repeats=1, generator=g)
    logdet_err, inverse_err = jacobian_check(flow, dequantise(k_test[:4], LEVELS, g))
    run.print(f"  RealNVP: test {flow_bpd:.3f} bits/dim (train {flow_train_bpd:.3f}), log-det vs autograd "
              f"{logdet_err:.1e}, inverse {inverse_err:.1e}  ({time.perf_counter() - t0:.0f} s)")

    # the VAE on the same data, its ELBO and IW bound in bits/dim
    t0 = time.perf_counter()
    vae = BinomialVAE(D, cfg.vae_k, (cfg.vae_hidden,))
    vae_curve: list[tuple[int, float]] = []
    to_bpd = lambda nats: nats / (D * math.log(2))
    train_vae(vae, k_train.reshape(-1, D) / (LEVELS - 1), cfg.vae_steps, seed=cfg.seed,
              log=lambda s, r, k: (vae_curve.append((s, to_bpd(r + k))), run.log(model="vae", step=s, neg_elbo_bpd=to_bpd(r + k))))
    vae.eval()
    xt = k_test.reshape(-1, D) / (LEVELS - 1)
    with torch.no_grad():
        elbo = torch.stack([torch.sub(*vae.elbo_terms(xt, g)) for _ in range(10)]).mean(0)
    iw = vae.importance_log_likelihood(xt, cfg.iw_samples, g)
    vae_elbo_bpd, vae_iw_bpd = float(to_bpd(-elbo).mean()), float(to_bpd(-iw).mean())
    run.print(f"  VAE: ELBO {vae_elbo_bpd:.3f} bits/dim, IW-{cfg.iw_samples} {vae_iw_bpd:.3f}  ({time.perf_counter() - t0:.0f} s)")

    net, net_acc = feature_network(8, "digits")
    real_feats, _ = embed(net, digit_images("test")[0])
    to_pm1 = lambda k: k / (LEVELS - 1) * 2 - 1
    temp_fid, temp_samples = {}, {}
    for T in cfg.temperatures:
        s = flow.sample(cfg.n_samples, T, torch.Generator().manual_seed(cfg.seed + 2))         # [0, 1]
        temp_samples[T] = s * 2 - 1
        temp_fid[T] = fid(embed(net, temp_samples[T])[0], real_feats)
    vae_fid = fid(embed(net, vae.sample(cfg.n_samples, torch.Generator().manual_seed(cfg.seed + 2))
                        .reshape(-1, 1, 8, 8) * 2 - 1)[0], real_feats)
    train_fid = fid(embed(net, to_pm1(k_train[:cfg.n_samples]))[0], real_feats)
    run.print("  flow FID by temperature: " + ", ".join(f"T={T}: {v:.1f}" for T, v in temp_fid.items())
              + f"; VAE {vae_fid:.1f}; train images {train_fid:.1f}")

    # 3. Langevin on a known mixture
    mix = GaussianMixtureEnergy(torch.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 1.5]]), torch.tensor([0.5, 0.5, 0.6]),
                                torch.tensor([0.5, 0.3, 0.2]))
    gl = torch.Generator().manual_seed(cfg.seed + 3)
    start = 2 * torch.randn(cfg.chains, 2, generator=gl)
    chains = langevin(mix, start, cfg.chain_steps, cfg.chain_step_size, generator=gl)
    exact = mix.sample(cfg.chains, gl)
    tv_chains, tv_exact, tv_start = (histogram_tv(s, mix.log_density, -4, 4, 20) for s in (chains, exact, start))
    mean, cov = mix.mean_cov()
    moment_err = max(float((chains.mean(0) - mean).abs().max()), float((torch.cov(chains.T) - cov).abs().max()))
    run.print(f"  Langevin on the mixture: TV {tv_chains:.3f} (exact samples {tv_exact:.3f}, start {tv_start:.3f}), "
              f"moments within {moment_err:.3f}")

    # 4. EBM on the 8-Gaussian ring
    t0 = time.perf_counter()
    ring_std = 0.1
    torch.manual_seed(cfg.seed)
    e2d = MLPEnergy(2, 64, 3)
    buf2d = ReplayBuffer(two_d_noise(), 2000, 0.05, torch.Generator().manual_seed(cfg.seed))
    train_ebm(e2d, lambda n, gg: ring_of_gaussians(n, std=ring_std, generator=gg), buf2d, cfg.ebm2d_steps,
              langevin_steps=10, step_size=0.02, noise=0.05, alpha=0.1, lr=3e-3, seed=cfg.seed,
              log=lambda s, l, ep, en: run.log(model="ebm2d", step=s, loss=l, e_pos=ep, e_neg=en))
    g2 = torch.Generator().manual_seed(cfg.seed + 4)
    ring_fresh = langevin(e2d, two_d_noise()(1000, g2), 200, 0.02, 0.05, generator=g2)
    modes_fresh, quality_fresh = ring_modes_covered(ring_fresh, std=ring_std)
    modes_buf, quality_buf = ring_modes_covered(buf2d.data, std=ring_std)
    run.print(f"  ring EBM: fresh chains cover {modes_fresh}/8 modes ({quality_fresh:.0%} near a centre), buffer "
              f"{modes_buf}/8 ({quality_buf:.0%})  ({time.perf_counter() - t0:.0f} s)")

    # 5. EBM on the digits
    t0 = time.perf_counter()
    x_img = digit_images("train")[0]
    torch.manual_seed(cfg.seed)
    e_img = ConvEnergy(16)
    noise_fn = image_noise((1, 8, 8))
    buf_img = ReplayBuffer(noise_fn, 2000, 0.05, torch.Generator().manual_seed(cfg.seed))
    train_ebm(e_img, lambda n, gg: x_img[torch.randint(0, len(x_img), (n,), generator=gg)], buf_img, cfg.ebm_img_steps,
              batch=64, langevin_steps=cfg.langevin_steps, step_size=cfg.img_step_size, noise=cfg.img_noise,
              clamp=(-1.0, 1.0), alpha=0.1, lr=1e-3, seed=cfg.seed,
              log=lambda s, l, ep, en: run.log(model="ebm_digits", step=s, loss=l, e_pos=ep, e_neg=en))
    ebm_fid = fid(embed(net, buf_img.data[:cfg.n_samples])[0], real_feats)
    noise_fid = fid(embed(net, noise_fn(cfg.n_samples, torch.Generator().manual_seed(cfg.seed + 5)))[0], real_feats)
    run.print(f"  digits EBM: buffer FID {ebm_fid:.1f} vs its starting noise {noise_fid:.1f}  "
              f"({time.perf_counter() - t0:.0f} s)")

    fig, ax = plt.subplots(2, 4, figsize=(16, 8))
    s_, b_ = zip(*flow_curve)
    ax[0, 0].plot(s_, b_, label="RealNVP −log₂ p / D (train batches)")
    s_, b_ = zip(*vae_curve)
    ax[0, 0].plot(s_, b_, label="VAE −ELBO / D (train batches)")
    for val, name, st in ((flow_bpd, "flow, test", "-"), (vae_elbo_bpd, "VAE ELBO, test", "--"),
                          (vae_iw_bpd, "VAE IW, test", ":")):
        ax[0, 0].axhline(val, ls=st, color="k", lw=0.8, label=f"{name} {val:.3f}")
    ax[0, 0].set(xlabel="step", ylabel="bits/dim", ylim=(min(flow_bpd, vae_iw_bpd) - 0.3, max(flow_bpd, vae_elbo_bpd) + 1.5),
                 title="17-level 8×8 digits")
    ax[0, 0].legend(fontsize=7)
    for i, T in enumerate(cfg.temperatures[-3:]):
        ax[0, 1 + i].imshow(image_grid(temp_samples[T][:64], 8), cmap="gray")
        ax[0, 1 + i].set_title(f"RealNVP samples, T={T} (FID {temp_fid[T]:.1f})", fontsize=9)
        ax[0, 1 + i].axis("off")
    ax[1, 0].hist2d(chains[:, 0].numpy(), chains[:, 1].numpy(), bins=40, range=[[-4, 4], [-4, 4]], cmap="Blues")
    ax[1, 0].set_title(f"Langevin on a known mixture: TV {tv_chains:.3f} (exact {tv_exact:.3f})", fontsize=9)
    ax[1, 1].scatter(*ring_fresh.T.numpy(), s=2, alpha=0.5)
    ax[1, 1].set(xlim=(-3, 3), ylim=(-3, 3), title=f"ring EBM, 200 Langevin steps from noise: {modes_fresh}/8 modes")
    ax[1, 2].imshow(image_grid(buf_img.data[:64], 8), cmap="gray")
    ax[1, 2].set_title(f"digits EBM replay buffer (FID {ebm_fid:.1f})", fontsize=9)
    ax[1, 2].axis("off")
    ax[1, 3].imshow(image_grid(to_pm1(k_test[:64]), 8), cmap="gray")
    ax[1, 3].set_title(f"test digits (train-vs-test FID {train_fid:.1f})", fontsize=9)
    ax[1, 3].axis("off")
    run.savefig(fig, "flows_ebm")

    checks = {"logdet_equals_autograd": logdet_err < 1e-6 and inverse_err < 1e-6,
              "flow_below_vae_elbo": flow_bpd < vae_elbo_bpd,
              "langevin_matches_mixture": tv_chains <= tv_exact + cfg.tv_tolerance and moment_err < 0.15
              and tv_start > 3 * tv_chains,
              "ring_ebm_all_modes": modes_fresh == 8,
              "digits_ebm_fid": ebm_fid < cfg.fid_ratio * noise_fid}
    metrics = {"flow_bits_per_dim": flow_bpd, "flow_train_bits_per_dim": flow_train_bpd,
               "vae_elbo_bits_per_dim": vae_elbo_bpd, "vae_iw_bits_per_dim": vae_iw_bpd,
               "logdet_vs_autograd": logdet_err, "inverse_max_abs": inverse_err,
               "flow_fid_by_temperature": {str(T): v for T, v in temp_fid.items()}, "vae_fid": vae_fid,
               "train_images_fid": train_fid, "feature_net_accuracy": net_acc,
               "langevin_tv": tv_chains, "exact_samples_tv": tv_exact, "start_tv": tv_start,
               "langevin_moment_max_abs_err": moment_err, "ring_modes_fresh": modes_fresh,
               "ring_quality_fresh": quality_fresh, "ring_modes_buffer": modes_buf, "ring_quality_buffer": quality_buf,
               "ebm_digits_fid": ebm_fid, "noise_fid": noise_fid, "checks": checks}
    notes = (f"test bits/dim: RealNVP {flow_bpd:.3f}, VAE ELBO {vae_elbo_bpd:.3f}, VAE IW-{cfg.iw_samples} "
             f"{vae_iw_bpd:.3f}; log-det vs autograd {logdet_err:.1e}; Langevin TV {tv_chains:.3f} vs exact "
             f"{tv_exact:.3f}; ring {modes_fresh}/8 modes; digits EBM FID {ebm_fid:.1f} vs noise {noise_fid:.1f}; "
             + "; ".join(f"{k}={'yes' if v else 'NO'}" for k, v in checks.items()))
    return Verdict(held=all(checks.values()), metrics=metrics, notes=notes)
