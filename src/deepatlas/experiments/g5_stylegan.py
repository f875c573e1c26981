"""G5: StyleGAN on 14×14 Fashion-MNIST — style mixing, noise inputs and the truncation trick's
fidelity/variety trade.

Built: models/stylegan.py (mapping network, StyleGAN2 weight modulation/demodulation beside
StyleGAN1's AdaIN, per-layer noise, skip-connected image outputs, style mixing regularisation,
the truncation trick with a running w̄). The discriminator and the training loop are models/gan.py's
(DCDiscriminator, train_gan with the non-saturating loss); the generator mixes styles itself in
training mode.

Measured: samples at ψ ∈ psis (the same z for every ψ) against test images, with FID and
Kynkäänniemi et al.'s precision (fidelity) and recall (variety) on the project's own Fashion-MNIST
classifier features (metrics.features). Checks:
  * ψ = 0 maps every z to one image, the synthesis of w̄ (max difference recorded, noise off);
  * the truncation sweep: recall falls as ψ goes 1 -> 0 (Spearman ρ(ψ, recall) ≥ rho_min) and
    precision rises (ρ(ψ, precision) ≤ −rho_min over ψ ∈ (0, 1], the ψ = 0 point being one image);
  * the samples' variety without reference to data (mean pairwise feature distance) falls with ψ;
  * the model learned something: FID at ψ = 1 below fid_factor (½) of the untrained generator's.
The quick run (60 steps, a barely trained model) checks ψ = 0, diversity and FID < ¾ of the
untrained; precision/recall need the trained model of the full setting.
Pictures: a style-mixing grid (coarse 7×7 styles from one latent, fine 14×14 styles from
another), rows of truncated samples, and the noise inputs' per-pixel spread.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.data.images import fashion_images, image_grid
from deepatlas.metrics.features import embed, feature_network, score_samples
from deepatlas.models.gan import DCDiscriminator, train_gan
from deepatlas.models.stylegan import StyleGenerator


@dataclass
class Config:
    steps: int = 2000
    batch: int = 64
    lr: float = 2e-3
    channels: tuple[int, ...] = (32, 32)
    d_width: int = 64
    z_dim: int = 32
    mixing_prob: float = 0.9
    psis: tuple[float, ...] = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)
    n_samples: int = 500
    n_real: int = 1000
    rho_min: float = 0.8
    fid_factor: float = 0.5        # "learned": FID at ψ = 1 below this share of the untrained generator's
    full_claim: bool = True        # also require precision up / recall down (the quick run checks diversity only)
    seed: int = 0


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (ties get their average rank); 0 when either side is constant."""
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return 0.0
    return float(spearmanr(a, b).statistic)


def diversity(net, images: torch.Tensor) -> float:
    """Mean pairwise distance of the samples' features: variety without reference to the data."""
    f = embed(net, images)[0]
    return float(torch.pdist(f.double()).mean())


@experiment("G5", "stylegan",
            claim="a StyleGAN (mapping net, modulated/demodulated convs, noise inputs, style mixing) on 14×14 "
                  "Fashion-MNIST: ψ = 0 gives one mean image, and as ψ goes from 1 to 0 precision (fidelity) rises "
                  "and recall (variety) falls",
            config=Config, one_thread=True,
            quick={"steps": 60, "batch": 32, "n_samples": 200, "n_real": 300, "psis": "1.0,0.5,0.0",
                   "fid_factor": 0.75, "full_claim": False},
            headline={"fid_psi_1": ("FID at ψ=1", "{:.1f}"), "precision_psi_1": ("precision ψ=1", "{:.2f}"),
                      "precision_best_truncated": ("best truncated precision", "{:.2f}"),
                      "recall_psi_1": ("recall ψ=1", "{:.2f}"), "rho_recall": ("ρ(ψ, recall)", "{:.2f}")})
def stylegan(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if 1.0 not in cfg.psis or 0.0 not in cfg.psis:
        raise ValueError(f"psis {cfg.psis} must include 1.0 and 0.0")
    x, _ = fashion_images("train", 14)
    real, _ = fashion_images("test", 14, cfg.n_real)
    net, net_acc = feature_network(14, "fashion")
    torch.manual_seed(cfg.seed)
    gen = StyleGenerator(cfg.z_dim, cfg.z_dim, cfg.channels, base=7, mixing_prob=cfg.mixing_prob)
    disc = DCDiscriminator(cfg.d_width)
    z = torch.randn(cfg.n_samples, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))
    with torch.no_grad():
        untrained = score_samples(net, gen.eval()(z), real)
    gen.train()
    history = train_gan(gen, disc, lambda n, g: x[torch.randint(0, len(x), (n,), generator=g)], cfg.steps,
                        loss="non_saturating", batch=cfg.batch, lr=cfg.lr, betas=(0.0, 0.99), seed=cfg.seed,
                        on_step=None)
    for step in range(0, cfg.steps, max(1, cfg.steps // 50)):
        run.log(step=step, d_loss=history[step][0], g_loss=history[step][1])
    gen.eval()

    scores, samples, divs = {}, {}, {}
    for psi in cfg.psis:
        with torch.no_grad():
            samples[psi] = gen(z, psi=psi, noise="random")
        scores[psi] = score_samples(net, samples[psi], real)
        divs[psi] = diversity(net, samples[psi])
        s = scores[psi]
        run.print(f"  ψ={psi:.1f}: FID {s.fid:.1f}  precision {s.precision:.3f}  recall {s.recall:.3f}  "
                  f"diversity {divs[psi]:.2f}")
        run.log(psi=psi, diversity=divs[psi], **s.as_dict())
    with torch.no_grad():
        mean_imgs = gen(z[:16], psi=0.0, noise="none")
        w_bar = gen.synthesis(gen.w_avg.expand(1, gen.n_ws, cfg.z_dim), noise="none")
        mean_image_diff = float((mean_imgs - w_bar).abs().max())
        # noise inputs: the same z, 16 noise draws — the per-pixel spread is the stochastic detail
        one = gen(z[:1].expand(16, -1), noise="random")
        noise_spread = float(one.std(0).mean())
        # style mixing: coarse (7×7 layers, ws[0:2]) from the row latent, the rest from the column latent
        za, zb = z[:5], z[5:10]
        grid = [torch.cat([torch.full((1, 1, 14, 14), 1.0), gen(zb, noise="none")])]
        for i in range(5):
            mixed = gen.synthesis(gen.styles(za[i:i + 1].expand(5, -1), z_mix=zb, crossover=2), noise="none")
            grid.append(torch.cat([gen(za[i:i + 1], noise="none"), mixed]))
        grid = torch.cat(grid)

    psis = list(cfg.psis)
    prec = [scores[p].precision for p in psis]
    rec = [scores[p].recall for p in psis]
    pos = [p for p in psis if p > 0]
    rho_recall = spearman(psis, rec)
    rho_precision = spearman(pos, [scores[p].precision for p in pos])
    best_truncated = max(scores[p].precision for p in psis if p < 1)

    fig, ax = plt.subplots(1, 4, figsize=(18, 4.5), gridspec_kw={"width_ratios": [1.2, 1, 1, 1]})
    ax[0].plot(psis, prec, "o-", label="precision (fidelity)")
    ax[0].plot(psis, rec, "s-", label="recall (variety)")
    ax0b = ax[0].twinx()
    ax0b.plot(psis, [scores[p].fid for p in psis], "k:", label="FID")
    ax0b.set_ylabel("FID (own features)")
    ax[0].set(xlabel="truncation ψ", ylabel="precision / recall", title="truncation trick: w̄ + ψ (w − w̄)")
    ax[0].invert_xaxis()
    ax[0].legend(loc="center left", fontsize=8)
    rows = torch.cat([samples[p][:10] for p in psis])
    ax[1].imshow(image_grid(rows.clamp(-1, 1), 10), cmap="gray")
    ax[1].set_title("rows: ψ = " + ", ".join(f"{p:g}" for p in psis), fontsize=9)
    ax[2].imshow(image_grid(grid.clamp(-1, 1), 6), cmap="gray")
    ax[2].set_title("style mixing: 7×7 styles from the row, 14×14 from the column", fontsize=9)
    ax[3].imshow(one.std(0)[0].numpy(), cmap="magma")
    ax[3].set_title(f"noise inputs: per-pixel std over 16 draws (mean {noise_spread:.3f})", fontsize=9)
    for a in ax[1:]:
        a.axis("off")
    run.savefig(fig, "truncation")

    div = [divs[p] for p in psis]
    rho_diversity = spearman(psis, div)
    checks = {"psi0_mean_image": mean_image_diff < 1e-5, "diversity_falls": rho_diversity >= cfg.rho_min,
              "learned": scores[1.0].fid < cfg.fid_factor * untrained.fid}
    if cfg.full_claim:
        checks["recall_falls"] = rho_recall >= cfg.rho_min and rec[psis.index(0.0)] < rec[psis.index(1.0)]
        checks["precision_rises"] = rho_precision <= -cfg.rho_min and best_truncated > scores[1.0].precision
    metrics = {"fid_psi_1": scores[1.0].fid, "precision_psi_1": scores[1.0].precision, "recall_psi_1": scores[1.0].recall,
               "precision_best_truncated": best_truncated, "psis": psis, "precision": prec, "recall": rec,
               "fid": [scores[p].fid for p in psis], "rho_recall": rho_recall, "rho_precision": rho_precision,
               "diversity": div, "rho_diversity": rho_diversity,
               "fid_untrained": untrained.fid, "mean_image_max_abs_diff": mean_image_diff, "noise_pixel_std": noise_spread,
               "feature_net_accuracy": net_acc, "final_d_loss": history[-1][0], "final_g_loss": history[-1][1],
               "checks": checks}
    notes = (f"ψ 1 -> 0: precision {' '.join(f'{v:.2f}' for v in prec)}, recall {' '.join(f'{v:.2f}' for v in rec)} "
             f"(ρ(ψ, recall) {rho_recall:.2f}, ρ(ψ, precision) over ψ>0 {rho_precision:.2f}); FID at ψ=1 "
             f"{scores[1.0].fid:.1f} vs untrained {untrained.fid:.1f}; ψ=0 max |x − G(w̄)| {mean_image_diff:.1e}; "
             + "; ".join(f"{k}={'yes' if v else 'NO'}" for k, v in checks.items()))
    return Verdict(held=all(checks.values()), metrics=metrics, notes=notes)
