"""G4: conditional GANs — generate on a label, translate an image with pairs (Pix2Pix) and without
(CycleGAN), on 14×14 Fashion-MNIST.

Built: models/cgan.py (label-embedding generator, projection discriminator), models/pix2pix.py
(Sobel edge maps as the paired source, models/unet.py's U-Net as the generator, PatchGAN with its
receptive field computed by nn.conv and checked by gradients in tests/models/test_pix2pix.py,
L1 + adversarial loss), models/cyclegan.py (two generators, two discriminators, least-squares
adversarial, cycle-consistency and identity losses), metrics/image_quality.py (PSNR and SSIM equal
to torchmetrics', sharpness).

Measured on test images, with FID on the project's own Fashion-MNIST classifier (metrics.features):
  1. cGAN: per-class FID (class-c samples vs class-c test images) and the share of samples the
     classifier assigns to the class they were asked for (chance: 10%);
  2. Pix2Pix, edges -> image, L1 only vs L1 + adversarial (λ = 100): L1, PSNR, SSIM to the true image,
     FID, and sharpness (mean gradient magnitude) against the real images';
  3. CycleGAN, edge maps of one half of the training set (domain A) and the images of the other half
     (domain B), never paired: the same test metrics against the true image, beside a baseline
     that ignores the input (a shuffled real test image), and the cycle reconstruction error.
Held when the cGAN's class accuracy ≥ class_acc_min (60%), both Pix2Pix models beat the
shuffled-image baseline in L1 and SSIM, CycleGAN's cycle loss falls over training, and (full setting)
the adversarial Pix2Pix is sharper than L1-only (closer to the real images' sharpness) with L1-only
no worse in L1 (the blur is the L1 optimum), and CycleGAN beats the baseline in L1. The quick run
(a few dozen steps) checks the first three, with class accuracy ≥ 20% (2× chance).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.data.images import fashion_images, image_grid
from deepatlas.metrics.features import embed, feature_network
from deepatlas.metrics.fid import fid
from deepatlas.metrics.image_quality import sharpness, translation_scores
from deepatlas.models.cgan import ConditionalGenerator, ProjectionDiscriminator, train_cgan
from deepatlas.models.cyclegan import CycleGAN, train_cyclegan
from deepatlas.models.pix2pix import PatchDiscriminator, UNetTranslator, edge_map, train_pix2pix

CLASSES = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


@dataclass
class Config:
    cgan_steps: int = 1000
    cgan_width: int = 32
    per_class: int = 200           # cGAN samples per class
    p2p_steps: int = 300
    cycle_steps: int = 200
    batch: int = 16
    lr: float = 1e-3
    unet_channels: tuple[int, ...] = (16, 32)
    l1_weight: float = 10.0        # the paper's λ is 100; at 300 small steps the adversarial term needs more say
    n_train: int = 20000           # training images for the translation models
    n_test: int = 500
    class_acc_min: float = 0.6
    full_claim: bool = True        # the quick run (a few dozen steps) checks what so little training can show
    seed: int = 0


@experiment("G4", "conditional-gans",
            claim="a class-conditional GAN draws the class it is asked for (own-classifier accuracy, per-class FID); "
                  "Pix2Pix with L1 + adversarial loss is sharper than L1 alone at a similar L1 error, and both it and "
                  "an unpaired CycleGAN translate edge maps to images closer to the truth than an unrelated image is",
            config=Config, one_thread=True,
            quick={"cgan_steps": 200, "per_class": 70, "p2p_steps": 30, "cycle_steps": 16, "n_train": 1000,
                   "n_test": 150, "class_acc_min": 0.2, "unet_channels": "8,16", "full_claim": False},
            headline={"cgan_class_accuracy": ("cGAN class accuracy", "{:.1%}"),
                      "cgan_mean_class_fid": ("mean per-class FID", "{:.1f}"),
                      "p2p_adv_ssim": ("Pix2Pix SSIM", "{:.3f}"), "p2p_l1_ssim": ("L1-only SSIM", "{:.3f}"),
                      "cycle_ssim": ("CycleGAN SSIM", "{:.3f}")})
def conditional_gans(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = fashion_images("train", 14)
    xt, yt = fashion_images("test", 14)
    net, net_acc = feature_network(14, "fashion")

    # 1. class-conditional GAN
    torch.manual_seed(cfg.seed)
    gen, disc = ConditionalGenerator(width=cfg.cgan_width), ProjectionDiscriminator(width=cfg.cgan_width)
    hist = train_cgan(gen, disc, lambda n, g: (lambda i: (x[i], y[i]))(torch.randint(0, len(x), (n,), generator=g)),
                      cfg.cgan_steps, seed=cfg.seed)
    for s in range(0, cfg.cgan_steps, max(1, cfg.cgan_steps // 30)):
        run.log(model="cgan", step=s, d_loss=hist[s][0], g_loss=hist[s][1])
    gen.eval()
    gz = torch.Generator().manual_seed(cfg.seed + 1)
    class_fid, correct, class_samples = [], 0, []
    with torch.no_grad():
        for c in range(10):
            labels = torch.full((cfg.per_class,), c)
            s = gen(torch.randn(cfg.per_class, gen.z_dim, generator=gz), labels)
            class_samples.append(s[:8])
            feats, probs = embed(net, s)
            correct += int((probs.argmax(1) == c).sum())
            class_fid.append(fid(feats, embed(net, xt[yt == c][:cfg.per_class])[0]))
    class_acc = correct / (10 * cfg.per_class)
    run.print(f"  cGAN: class accuracy {class_acc:.1%}; per-class FID " + ", ".join(f"{v:.0f}" for v in class_fid))

    # paired data: Sobel edges -> images
    src, tgt = edge_map(x[:cfg.n_train]), x[:cfg.n_train]
    src_t, tgt_t = edge_map(xt[:cfg.n_test]), xt[:cfg.n_test]
    real_feats = embed(net, tgt_t)[0]
    real_sharp = float(sharpness(tgt_t).mean())
    shuffled = tgt_t[torch.randperm(len(tgt_t), generator=torch.Generator().manual_seed(cfg.seed + 2))]
    baseline = translation_scores(shuffled, tgt_t)

    def evaluate(name: str, out: torch.Tensor) -> dict[str, float]:
        scores = translation_scores(out, tgt_t)
        scores.update(fid=fid(embed(net, out)[0], real_feats), sharpness=float(sharpness(out.clamp(-1, 1)).mean()))
        run.print(f"  {name}: L1 {scores['l1']:.3f}  PSNR {scores['psnr']:.2f} dB  SSIM {scores['ssim']:.3f}  "
                  f"FID {scores['fid']:.1f}  sharpness {scores['sharpness']:.3f} (real {real_sharp:.3f})")
        return scores

    # 2. Pix2Pix: L1 only vs L1 + adversarial
    outputs, results = {}, {}
    for name, with_d in (("p2p_l1", False), ("p2p_adv", True)):
        torch.manual_seed(cfg.seed)
        g_ = UNetTranslator(channels=cfg.unet_channels)
        d_ = PatchDiscriminator(2) if with_d else None
        train_pix2pix(g_, d_, src, tgt, cfg.p2p_steps, batch=cfg.batch, lr=cfg.lr, l1_weight=cfg.l1_weight,
                      seed=cfg.seed, log=lambda s, l1, dl, n=name: run.log(model=n, step=s, l1=l1, d_loss=dl))
        with torch.no_grad():
            outputs[name] = g_.eval()(src_t)
        results[name] = evaluate(name, outputs[name])
    patch_rf = PatchDiscriminator(2).receptive_field

    # 3. CycleGAN on unpaired halves
    torch.manual_seed(cfg.seed)
    half = cfg.n_train // 2
    cyc = CycleGAN(cfg.unet_channels)
    cycle_curve: list[float] = []
    train_cyclegan(cyc, src[:half], tgt[half:], cfg.cycle_steps, batch=cfg.batch, lr=cfg.lr, seed=cfg.seed,
                   log=lambda s, parts: (cycle_curve.append(parts["cycle"]), run.log(model="cyclegan", step=s, **parts)),
                   log_every=max(1, cfg.cycle_steps // 10))
    cyc.eval()
    with torch.no_grad():
        outputs["cycle"] = cyc.G(src_t)
        back = cyc.F(outputs["cycle"])
        edges_pred = cyc.F(tgt_t)
    results["cycle"] = evaluate("CycleGAN A->B", outputs["cycle"])
    cycle_err = float((back - src_t).abs().mean())
    edge_scores = translation_scores(edges_pred, src_t)
    run.print(f"  CycleGAN: cycle |F(G(a)) − a| {cycle_err:.3f}; B->A edges L1 {edge_scores['l1']:.3f}, SSIM "
              f"{edge_scores['ssim']:.3f}; baseline (shuffled real image) L1 {baseline['l1']:.3f} SSIM {baseline['ssim']:.3f}")

    fig, ax = plt.subplots(1, 2, figsize=(15, 6), gridspec_kw={"width_ratios": [1, 1.1]})
    ax[0].imshow(image_grid(torch.cat(class_samples), 8), cmap="gray")
    ax[0].set_yticks([8 + 15 * i for i in range(10)], [f"{n} ({f:.0f})" for n, f in zip(CLASSES, class_fid)], fontsize=8)
    ax[0].set_xticks([])
    ax[0].set_title(f"cGAN samples by class (per-class FID); class accuracy {class_acc:.0%}", fontsize=10)
    k = 10
    rows = [src_t[:k], tgt_t[:k], outputs["p2p_l1"][:k], outputs["p2p_adv"][:k], outputs["cycle"][:k]]
    labels = ["edges (input)", "true image", f"L1 only  SSIM {results['p2p_l1']['ssim']:.2f}",
              f"L1 + adv  SSIM {results['p2p_adv']['ssim']:.2f}", f"CycleGAN  SSIM {results['cycle']['ssim']:.2f}"]
    ax[1].imshow(image_grid(torch.cat(rows).clamp(-1, 1), k), cmap="gray")
    ax[1].set_yticks([7 + 15 * i for i in range(len(rows))], labels, fontsize=8)
    ax[1].set_xticks([])
    ax[1].set_title(f"edges -> image: Pix2Pix (PatchGAN {patch_rf}×{patch_rf}) and unpaired CycleGAN", fontsize=10)
    run.savefig(fig, "translation")

    l1o, adv, cy = results["p2p_l1"], results["p2p_adv"], results["cycle"]
    checks = {"cgan_class_accuracy": class_acc >= cfg.class_acc_min,
              "pix2pix_beats_baseline": max(l1o["l1"], adv["l1"]) < baseline["l1"]
              and min(l1o["ssim"], adv["ssim"]) > baseline["ssim"],
              "cycle_loss_falls": cycle_curve[-1] < cycle_curve[0]}
    if cfg.full_claim:
        checks.update(adv_sharper=abs(adv["sharpness"] - real_sharp) < abs(l1o["sharpness"] - real_sharp),
                      l1_only_no_worse_in_l1=l1o["l1"] <= adv["l1"] * 1.05,
                      cyclegan_beats_baseline=cy["l1"] < baseline["l1"])
    metrics = {"cgan_class_accuracy": class_acc, "cgan_class_fid": class_fid, "cgan_mean_class_fid": sum(class_fid) / 10,
               "patch_receptive_field": patch_rf, "real_sharpness": real_sharp, "feature_net_accuracy": net_acc,
               **{f"{m}_{k}": v for m, r in results.items() for k, v in r.items()},
               **{f"baseline_{k}": v for k, v in baseline.items()},
               "cycle_reconstruction_l1": cycle_err, "cycle_loss_first": cycle_curve[0], "cycle_loss_last": cycle_curve[-1], "cycle_edges_l1": edge_scores["l1"],
               "cycle_edges_ssim": edge_scores["ssim"], "checks": checks}
    notes = (f"cGAN class accuracy {class_acc:.1%}, mean per-class FID {metrics['cgan_mean_class_fid']:.1f}; "
             f"Pix2Pix L1-only L1 {l1o['l1']:.3f} SSIM {l1o['ssim']:.3f} sharpness {l1o['sharpness']:.3f}, "
             f"L1+adv L1 {adv['l1']:.3f} SSIM {adv['ssim']:.3f} sharpness {adv['sharpness']:.3f} (real {real_sharp:.3f}); "
             f"CycleGAN L1 {cy['l1']:.3f} SSIM {cy['ssim']:.3f}; shuffled baseline L1 {baseline['l1']:.3f}; "
             + "; ".join(f"{k}={'yes' if v else 'NO'}" for k, v in checks.items()))
    return Verdict(held=all(checks.values()), metrics=metrics, notes=notes)
