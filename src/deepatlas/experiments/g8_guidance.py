"""G8: sampling and guidance — DDIM, classifier-free and classifier guidance, SDEdit, inpainting.

Built: diffusion/samplers.py (DDIM eq. 12/16 beside DDPM), diffusion/sampling.py (the loop with
classifier-free guidance, Ho & Salimans 2022 eq. 6; classifier guidance, Dhariwal & Nichol 2021
eq. 14; SDEdit, Meng et al. 2022; inpainting by replacement), diffusion/classifier.py (a
noise-aware classifier p(y | x_t, t)), diffusion/store.py (the trained model cached and saved to
the run folder, which `deepatlas generate-images RUN_DIR` reads).

One class-conditional U-Net (14×14 Fashion-MNIST, T = 1000, ε-prediction) trained with label
dropout p_uncond (the null class = "no label"), cached in $DEEPATLAS_CACHE/ddpm/ after the first
run. Measured, with deepatlas's own Fashion-MNIST classifier as the feature net (no Inception
weights offline; numbers comparable only within this project):
  1. DDIM parity: a 50-step chain of our ddim_step equals diffusers' DDIMScheduler, η = 0 and 1,
     with ε̂ as the network gave it (diffusers' default) and re-derived from the clipped x̂_0
     (use_clipped_model_output=True);
  2. samplers on the same model, same noise seeds, same n (unconditional, null label): DDIM with
     10…50 steps at η = 0, DDIM-50 with diffusers' default ε̂, DDIM-50 at η = 1 and strided
     DDPM-50 — FID and KID against the same real images (the 1000-step chain with
     compare_ddpm_steps=1000; bench/bench_diffusion.py measures DDIM-50 against DDPM-1000 on
     this same cached model). A first full run used diffusers' default ε̂ everywhere: DDIM-50
     at η = 0 read FID 183 (worse than DDIM-10's 135) and guidance above w = 2 lost confidence,
     because a clipped x̂_0 paired with the unclipped ε̂ drifts; clipped_eps (GLIDE's choice)
     is therefore used for every DDIM chain below;
  3. classifier-free guidance sweep over w: FID, our classifier's confidence in the asked label,
     and per-class diversity (mean pairwise feature distance within a class);
  4. classifier guidance of the unconditional model with a noise-aware classifier: accuracy of
     the asked label against the guidance scale s;
  5. SDEdit from test images at growing t0: the distance to the guide grows with t0;
  6. inpainting (top half known): known pixels are kept exactly, and the generated half is
     closer to the truth than the same half of an unguided sample.
Held when the DDIM parity is < 1e-5, confidence rises and diversity falls from w = 1 to the
largest w, classifier guidance lifts accuracy by ≥ 0.25 over s = 0, the SDEdit distance rises
monotonically with t0, and inpainting keeps the known pixels and beats the unguided half.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig
from deepatlas.data.images import generative_images, image_grid
from deepatlas.diffusion.classifier import train_noisy_classifier
from deepatlas.diffusion.fashion import NULL_LABEL, DDPMSetup, denoiser_for, generate
from deepatlas.diffusion.samplers import ddim_step
from deepatlas.diffusion.sampling import Inpaint, classifier_gradient, guided_denoiser, sample
from deepatlas.diffusion.schedule import NoiseSchedule
from deepatlas.diffusion.store import cached_ddpm, save_diffusion
from deepatlas.metrics.features import embed, feature_network, score_samples


@dataclass
class Config:
    ddpm: DDPMSetup = field(default_factory=lambda: DDPMSetup(
        conditional=True, batch_size=32,
        train=TrainConfig(steps=800, lr=2e-3, min_lr=1e-4, warmup=50, schedule="cosine", log_every=50)))
    steps: int = 25                                 # DDIM steps of the guidance sweeps
    clipped_eps: bool = True                        # DDIM: ε̂ re-derived from the clipped x̂_0
    scales: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 5.0)   # classifier-free w (0 = unconditional)
    per_class: int = 6                              # samples per class and scale
    compare_steps: tuple[int, ...] = (10, 25, 50)
    compare_ddpm_steps: int = 0                     # > 0: also the DDPM chain of this many steps (bench_diffusion
                                                    # runs DDPM-1000 against DDIM-50 on this model)
    n_compare: int = 64
    clf_steps: int = 300                            # noise-aware classifier training
    clf_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    n_clf: int = 30
    sdedit_t0: tuple[int, ...] = (100, 300, 500, 700, 900)
    n_edit: int = 10
    n_inpaint: int = 32
    inpaint_steps: int = 50
    n_real: int = 1000
    seed: int = 0


def ddim_parity(T: int = 1000, steps: int = 50) -> float | None:
    """max |ours − diffusers' DDIMScheduler| over a whole chain with a fake network, η = 0 and 1."""
    try:
        from diffusers import DDIMScheduler
    except ImportError:
        return None
    worst = 0.0
    for eta in (0.0, 1.0):
        for clipped in (False, True):
            ref = DDIMScheduler(num_train_timesteps=T, beta_schedule="linear", clip_sample=True)
            ref.set_timesteps(steps)
            ours = NoiseSchedule(T, "linear")
            g = torch.Generator().manual_seed(int(eta))
            x_ref = x_ours = torch.randn(4, 1, 6, 6, generator=g)
            for t in ref.timesteps.tolist():
                noise = torch.randn(4, 1, 6, 6, generator=g)
                x_ref = ref.step(3 * torch.tanh(x_ref), t, x_ref, eta=eta, variance_noise=noise if eta else None,
                                 use_clipped_model_output=clipped).prev_sample
                x_ours, _ = ddim_step(ours, 3 * torch.tanh(x_ours), t, x_ours, t - T // steps, eta=eta, noise=noise,
                                      clipped_eps=clipped)
                worst = max(worst, (x_ref - x_ours).abs().max().item())
    return worst


def class_stats(net, x: torch.Tensor, labels: torch.Tensor) -> dict:
    """Confidence p(label | x), accuracy, and mean within-class pairwise feature distance."""
    feats, probs = embed(net, x)
    conf = probs.gather(1, labels[:, None]).mean().item()
    acc = (probs.argmax(1) == labels).float().mean().item()
    spreads = [torch.pdist(feats[labels == c]).mean().item() for c in labels.unique() if (labels == c).sum() > 1]
    return {"confidence": conf, "accuracy": acc, "diversity": sum(spreads) / len(spreads)}


@experiment("G8", "guidance",
            claim="DDIM steps equal diffusers' (η = 0 and 1, ε̂ as given or re-derived from the clipped x̂_0); on a "
                  "class-conditional 14×14 Fashion-MNIST DDPM, "
                  "classifier-free guidance trades diversity for confidence as w grows, a noise-aware classifier's "
                  "guidance lifts the asked class's accuracy by ≥ 0.25, SDEdit departs further from its guide as t0 "
                  "grows, and inpainting keeps the known pixels while completing the rest closer to the truth than "
                  "an unguided sample",
            config=Config, one_thread=True,
            quick={"ddpm.data": "digits", "ddpm.size": 8, "ddpm.T": 200, "ddpm.train.steps": 150,
                   "ddpm.train.warmup": 10, "ddpm.batch_size": 32, "steps": 10, "scales": "0.0,1.0,4.0",
                   "per_class": 4, "compare_steps": "10,25", "compare_ddpm_steps": 0, "n_compare": 40,
                   "clf_steps": 200, "clf_scales": "0.0,2.0,4.0", "n_clf": 30, "sdedit_t0": "20,100,180",
                   "n_edit": 6, "n_inpaint": 12, "inpaint_steps": 20, "n_real": 300},
            headline={"ddim_parity": "{:.1e}", "fid_ddim50": ("FID DDIM-50", "{:.1f}"),
                      "fid_ddpm50": ("FID DDPM-50", "{:.1f}"),
                      "cfg_confidence_max_w": ("confidence at the largest w", "{:.2f}"),
                      "clf_accuracy_best": ("classifier-guided accuracy", "{:.2f}")})
def guidance(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setup = cfg.ddpm
    if not setup.conditional:
        raise ValueError("G8 needs a class-conditional model: ddpm.conditional=true")
    shape = (1, setup.size, setup.size)
    parity = ddim_parity()
    model, schedule, meta = cached_ddpm(setup, cfg.seed, log=run.print)
    save_diffusion(run.dir, model, setup, **{k: v for k, v in meta.items() if k not in ("kind", "setup")})
    run.print(f"model: {'cached' if meta['cached'] else 'trained'}, {meta['train_seconds']:.0f} s of training")
    net, net_acc = feature_network(setup.size, setup.data)
    real, real_y = generative_images(setup.data, "test", setup.size)
    real_ref = real[:cfg.n_real]
    floor = score_samples(net, real[cfg.n_real:cfg.n_real + cfg.n_compare], real_ref).fid
    metrics: dict = {"ddim_parity": parity if parity is not None else float("nan"),
                     "train_seconds": meta["train_seconds"], "model_cached": meta["cached"],
                     "feature_net_test_accuracy": net_acc, "fid_real_vs_real": floor}

    # 2. samplers on the same model and noise
    ce = cfg.clipped_eps
    compare = [(f"ddim{k}", "ddim", k, 0.0, ce) for k in cfg.compare_steps] + [
        ("ddim50_model_eps", "ddim", 50, 0.0, False), ("ddim50_eta1", "ddim", 50, 1.0, ce),
        ("ddpm50", "ddpm", 50, 0.0, False)]
    if cfg.compare_ddpm_steps:
        compare.append(("ddpm_full", "ddpm", cfg.compare_ddpm_steps, 0.0, False))
    sampler_scores = {}
    for name, sampler, k, eta, clipped in compare:
        if k > setup.T:
            continue
        x = generate(model, schedule, setup, cfg.n_compare, sampler, k, seed=cfg.seed + 1, eta=eta,
                     clipped_eps=clipped)
        s = score_samples(net, x, real_ref)
        sampler_scores[name] = {"fid": s.fid, "kid": s.kid, "steps": k}
        run.print(f"  {name:12} FID {s.fid:6.1f}  KID {s.kid:.3f}")
    metrics["sampler_scores"] = sampler_scores
    for name in ("ddim50", "ddim50_model_eps", "ddpm50", "ddpm_full"):
        if name in sampler_scores:
            metrics[f"fid_{name}"] = sampler_scores[name]["fid"]

    # 3. classifier-free guidance sweep
    labels = torch.arange(10).repeat_interleave(cfg.per_class)
    sweep = []
    for w in cfg.scales:
        x = generate(model, schedule, setup, len(labels), "ddim", cfg.steps, seed=cfg.seed + 2, labels=labels,
                     scale=w, clipped_eps=ce)
        st = {"w": w, "fid": score_samples(net, x, real_ref).fid, **class_stats(net, x, labels)}
        sweep.append(st)
        run.print(f"  w={w:<4} FID {st['fid']:6.1f}  confidence {st['confidence']:.2f}  "
                  f"diversity {st['diversity']:.2f}")
        if w == max(cfg.scales):
            guided_grid = x
    real_div = class_stats(net, real_ref, real_y[:cfg.n_real])["diversity"]
    metrics["cfg_sweep"] = sweep
    w1 = next(s for s in sweep if s["w"] == 1.0)
    top = sweep[-1]
    metrics.update(cfg_confidence_w1=w1["confidence"], cfg_confidence_max_w=top["confidence"],
                   cfg_diversity_w1=w1["diversity"], cfg_diversity_max_w=top["diversity"], real_diversity=real_div)
    cfg_ok = top["confidence"] > w1["confidence"] and top["diversity"] < w1["diversity"]

    # 4. classifier guidance of the unconditional model
    x_train, y_train = generative_images(setup.data, "train", setup.size)
    clf = train_noisy_classifier(x_train, y_train, schedule, cfg.clf_steps, seed=cfg.seed)
    clf_labels = torch.arange(cfg.n_clf) % 10
    null = torch.full((cfg.n_clf,), NULL_LABEL)
    clf_curve = []
    for s in cfg.clf_scales:
        x, _ = sample(guided_denoiser(model, null, 1.0, NULL_LABEL), schedule, (cfg.n_clf, *shape), "ddim",
                      cfg.steps, generator=torch.Generator().manual_seed(cfg.seed + 3),
                      classifier_grad=classifier_gradient(clf, clf_labels), classifier_scale=s, clipped_eps=ce)
        st = class_stats(net, x, clf_labels)
        clf_curve.append({"s": s, **st})
        run.print(f"  classifier guidance s={s:<5} accuracy {st['accuracy']:.2f}")
    metrics["clf_curve"] = clf_curve
    metrics["clf_accuracy_unguided"] = clf_curve[0]["accuracy"]
    metrics["clf_accuracy_best"] = max(c["accuracy"] for c in clf_curve[1:])
    clf_ok = metrics["clf_accuracy_best"] >= metrics["clf_accuracy_unguided"] + 0.25

    # 5. SDEdit
    guides = real[:cfg.n_edit]
    edits, dists = [], []
    for t0 in cfg.sdedit_t0:
        x, _ = sample(guided_denoiser(model, torch.full((cfg.n_edit,), NULL_LABEL), 1.0, NULL_LABEL), schedule,
                      guides.shape, "ddim", cfg.steps, generator=torch.Generator().manual_seed(cfg.seed + 4),
                      start=guides, start_t=t0, clipped_eps=ce)
        edits.append(x)
        dists.append((x - guides).pow(2).mean().item())
    metrics.update(sdedit_t0=list(cfg.sdedit_t0), sdedit_mse=dists)
    run.print("  SDEdit MSE to the guide: " + ", ".join(f"t0={t} {d:.3f}" for t, d in zip(cfg.sdedit_t0, dists)))
    sdedit_ok = all(a < b for a, b in zip(dists, dists[1:]))

    # 6. inpainting, top half known
    truth = real[cfg.n_real:cfg.n_real + cfg.n_inpaint]
    mask = torch.zeros(1, *shape)
    mask[..., :setup.size // 2, :] = 1
    den = guided_denoiser(model, torch.full((cfg.n_inpaint,), NULL_LABEL), 1.0, NULL_LABEL)
    filled, _ = sample(den, schedule, truth.shape, "ddpm", cfg.inpaint_steps,
                       generator=torch.Generator().manual_seed(cfg.seed + 5), inpaint=Inpaint(truth, mask))
    free, _ = sample(den, schedule, truth.shape, "ddpm", cfg.inpaint_steps,
                     generator=torch.Generator().manual_seed(cfg.seed + 5))
    hole = 1 - mask
    kept_err = ((filled - truth) * mask).abs().max().item()
    mse_fill = ((filled - truth) ** 2 * hole).sum().item() / (hole.sum().item() * len(truth))
    mse_free = ((free - truth) ** 2 * hole).sum().item() / (hole.sum().item() * len(truth))
    metrics.update(inpaint_known_max_abs=kept_err, inpaint_hole_mse=mse_fill, unguided_hole_mse=mse_free)
    run.print(f"  inpainting: known pixels |Δ| ≤ {kept_err:.1e}, hole MSE {mse_fill:.3f} vs unguided {mse_free:.3f}")
    inpaint_ok = kept_err < 1e-6 and mse_fill < mse_free

    fig, axes = plt.subplots(2, 3, figsize=(14, 9))
    ws = [s["w"] for s in sweep]
    ax = axes[0, 0]
    ax.plot(ws, [s["confidence"] for s in sweep], "o-", color="C0", label="confidence p(y | x)")
    ax.set(xlabel="guidance scale w", ylabel="confidence", title="classifier-free guidance")
    ax2 = ax.twinx()
    ax2.plot(ws, [s["diversity"] for s in sweep], "s--", color="C1", label="per-class diversity")
    ax2.plot(ws, [s["fid"] / max(s["fid"] for s in sweep) * max(st["diversity"] for st in sweep) for s in sweep],
             "^:", color="C2", label="FID (scaled)")
    ax2.set(ylabel="diversity (feature distance)")
    ax.legend(loc="upper left", fontsize=8), ax2.legend(loc="lower left", fontsize=8)
    names = list(sampler_scores)
    axes[0, 1].bar(range(len(names)), [sampler_scores[n]["fid"] for n in names])
    axes[0, 1].axhline(floor, color="grey", ls=":", label="real vs real")
    axes[0, 1].set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    axes[0, 1].set(ylabel="FID", title=f"samplers, same model, n = {cfg.n_compare}")
    axes[0, 1].legend(fontsize=8)
    axes[0, 2].plot([c["s"] for c in clf_curve], [c["accuracy"] for c in clf_curve], "o-")
    axes[0, 2].set(xlabel="classifier scale s", ylabel="accuracy of the asked class", title="classifier guidance")
    axes[1, 0].imshow(image_grid(guided_grid[::max(1, cfg.per_class // 4)][:40], 10), cmap="gray")
    axes[1, 0].set(title=f"w = {max(cfg.scales)}: rows of classes"), axes[1, 0].axis("off")
    axes[1, 1].imshow(image_grid(torch.stack([guides] + edits, 1).reshape(-1, *shape), len(edits) + 1), cmap="gray")
    axes[1, 1].set(title="SDEdit: guide, t0 = " + ", ".join(map(str, cfg.sdedit_t0))), axes[1, 1].axis("off")
    rows = torch.stack([truth, truth * mask - hole, filled, free], 1)[:8].reshape(-1, *shape)
    axes[1, 2].imshow(image_grid(rows, 4), cmap="gray")
    axes[1, 2].set(title="inpainting: truth, known, filled, unguided"), axes[1, 2].axis("off")
    run.savefig(fig, "guidance")

    parity_ok = parity is None or parity < 1e-5
    held = parity_ok and cfg_ok and clf_ok and sdedit_ok and inpaint_ok
    ddim50, full = sampler_scores.get("ddim50"), sampler_scores.get("ddpm_full")
    versus = (f"DDIM-50 FID {ddim50['fid']:.1f} vs DDPM-{full['steps']} {full['fid']:.1f} (n = {cfg.n_compare}, "
              f"real-vs-real {floor:.1f}); " if ddim50 and full else "")
    notes = (f"{versus}CFG confidence {w1['confidence']:.2f} -> {top['confidence']:.2f} and diversity "
             f"{w1['diversity']:.2f} -> {top['diversity']:.2f} from w = 1 to {top['w']}; classifier guidance accuracy "
             f"{metrics['clf_accuracy_unguided']:.2f} -> {metrics['clf_accuracy_best']:.2f}. Features: deepatlas's own "
             "classifier, not Inception: not comparable to published FIDs.")
    return Verdict(held=held, metrics=metrics, notes=notes)
