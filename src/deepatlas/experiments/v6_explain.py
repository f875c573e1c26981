"""V6: Grad-CAM finds the evidence — on a model built to know where it is, and by the deletion test.

Part A (built model, exact answer): deepatlas.explain.synthetic.TwoEvidenceNet puts class 0's evidence
in a square and class 1's in a bar; Grad-CAM (and the vanilla-gradient saliency) for each class must
peak inside that class's region.

Part B (trained ResNet, measured): the A1 ResNet trained on Fashion-MNIST; for `n_images` ≥ 200 test
images the deletion metric (Petsiuk et al. 2018): delete pixels (set to the black background) in the
order a map ranks them and track the predicted class's probability. Area under the curve (lower =
the map found what the decision rests on) for Grad-CAM at the last stage and at the first,
saliency, SmoothGrad, and a random order. Held when Part A holds and Grad-CAM's mean AUC is below
random's (saliency's peak on the built model is reported, not required). Also attention rollout on a small ViT, with its deletion AUC against random (reported).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.data.fashion_mnist import CLASS_NAMES
from deepatlas.explain.deletion import area_under, deletion_curve, random_maps
from deepatlas.explain.gradcam import grad_cam
from deepatlas.explain.rollout import attention_rollout
from deepatlas.explain.saliency import saliency
from deepatlas.explain.synthetic import REGIONS, TwoEvidenceNet, peak_in_region, two_evidence_image
from deepatlas.models.cnn import ResNet
from deepatlas.models.vit import ViT
from deepatlas.vision.classify import ClassifyConfig, load_images, save_model, train_classifier

RESNET = {"depths": (1, 1, 1), "widths": (16, 32, 64)}
VIT = {"image_size": 28, "patch_size": 4, "dim": 48, "depth": 3, "heads": 4, "mlp_dim": 96}


@dataclass
class Config:
    train_size: int = 10000
    test_size: int = 1000
    epochs: float = 3.0
    batch: int = 128
    augment: bool = True
    n_images: int = 300
    deletion_steps: int = 20
    smoothgrad_samples: int = 10
    rollout: bool = True           # also train a small ViT and test attention rollout (reported, not in held)
    seed: int = 0


def built_model_checks() -> dict[str, bool]:
    net, x = TwoEvidenceNet(), two_evidence_image()
    out = {}
    for cls in REGIONS:
        out[f"gradcam_peak_class{cls}"] = peak_in_region(grad_cam(net, x, "blur", target=cls)[0][0], cls)
        out[f"saliency_peak_class{cls}"] = peak_in_region(saliency(net, x, target=cls)[0][0], cls)
    return out


@experiment("V6", "gradcam-deletion",
            claim="Grad-CAM peaks on the evidence of a model built to know it, and on a trained ResNet deleting the "
                  "pixels Grad-CAM ranks highest lowers the class probability faster than deleting random pixels "
                  "(area under the deletion curve over ≥200 test images)",
            config=Config, quick={"train_size": 2000, "epochs": 2, "batch": 32, "augment": False, "n_images": 200,
                                  "deletion_steps": 8, "smoothgrad_samples": 3, "rollout": False},
            one_thread=True,
            headline={"auc_gradcam": ("deletion AUC, Grad-CAM", "{:.3f}"), "auc_random": ("random", "{:.3f}"),
                      "auc_saliency": ("saliency", "{:.3f}")})
def gradcam_deletion(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if cfg.n_images > cfg.test_size:
        raise ValueError(f"n_images {cfg.n_images} > test_size {cfg.test_size}; raise test_size")
    built = built_model_checks()
    run.print(f"built model: {built}")
    data = load_images(cfg.train_size, cfg.test_size, cfg.seed)
    tc = ClassifyConfig(epochs=cfg.epochs, batch=cfg.batch, lr=0.05 if not cfg.augment else 0.1, augment=cfg.augment,
                        seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    resnet = ResNet(**RESNET)
    r = train_classifier(resnet, data, tc)
    save_model(run.dir, "resnet", RESNET, resnet, test_size=cfg.test_size)
    run.print(f"ResNet test accuracy {r['test_accuracy']:.4f}")

    x = data.x_test[:cfg.n_images]
    background = float(data.x_train.min())          # black, normalised
    resnet.eval()
    with torch.no_grad():
        target = resnet(x).argmax(-1)
    maps = {"Grad-CAM (last stage)": grad_cam(resnet, x, "stages.2", target)[0],
            "Grad-CAM (first stage)": grad_cam(resnet, x, "stages.0", target)[0],
            "saliency": saliency(resnet, x, target)[0],
            "SmoothGrad": saliency(resnet, x, target, smooth=cfg.smoothgrad_samples, seed=cfg.seed)[0],
            "random": random_maps(tuple(x.shape[:1]) + tuple(x.shape[-2:]), cfg.seed)}
    curves = {k: deletion_curve(resnet, x, m, target, cfg.deletion_steps, background) for k, m in maps.items()}
    auc = {k: area_under(c) for k, c in curves.items()}
    for k in auc:
        run.print(f"{k:24s} deletion AUC {auc[k].mean():.4f}")
    vit_metrics, roll = {}, None
    if cfg.rollout:
        torch.manual_seed(cfg.seed)
        vit = ViT(**VIT)
        rv = train_classifier(vit, data, ClassifyConfig(epochs=cfg.epochs, batch=cfg.batch, lr=2e-3, optimizer="adamw",
                                                        weight_decay=0.05, augment=cfg.augment, seed=cfg.seed))
        with torch.no_grad():
            vit_target = vit.eval()(x).argmax(-1)
        roll = attention_rollout(vit, x)
        vit_metrics = {"vit_test_accuracy": rv["test_accuracy"], "vit_rollout_auc": area_under(deletion_curve(
            vit, x, roll, vit_target, cfg.deletion_steps, background)).mean().item(),
            "vit_random_auc": area_under(deletion_curve(vit, x, maps["random"], vit_target, cfg.deletion_steps,
                                                        background)).mean().item()}
        run.print(f"ViT (test accuracy {rv['test_accuracy']:.4f}) rollout deletion AUC "
                  f"{vit_metrics['vit_rollout_auc']:.4f} vs random {vit_metrics['vit_random_auc']:.4f}")

    fig, ax = plt.subplots(figsize=(7, 4))
    frac = torch.linspace(0, 1, cfg.deletion_steps + 1)
    for i, (k, c) in enumerate(curves.items()):
        ax.plot(frac, c.mean(0), c="k" if k == "random" else f"C{i}", ls="--" if k == "random" else "-",
                label=f"{k} (AUC {auc[k].mean():.3f})")
    ax.set(title=f"deletion curves, ResNet, {cfg.n_images} test images", xlabel="fraction of pixels deleted",
           ylabel="probability of the predicted class")
    ax.legend(fontsize=8)
    run.savefig(fig, "deletion")

    show = 6
    rows = {"Grad-CAM": maps["Grad-CAM (last stage)"], "SmoothGrad": maps["SmoothGrad"]}
    if roll is not None:
        rows["ViT rollout"] = roll
    fig, axes = plt.subplots(1 + len(rows), show, figsize=(12, 8))
    for j in range(show):
        axes[0, j].imshow(x[j, 0], cmap="gray")
        axes[0, j].set_title(f"{CLASS_NAMES[data.y_test[j]]}\n(pred. {CLASS_NAMES[target[j]]})", fontsize=8)
        for i, (name, m) in enumerate(rows.items(), start=1):
            axes[i, j].imshow(x[j, 0], cmap="gray")
            axes[i, j].imshow(m[j], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if j == 0:
                axes[i, j].set_ylabel(name)
        for i in range(1 + len(rows)):
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
    run.savefig(fig, "gradcam")

    wins = (auc["Grad-CAM (last stage)"] < auc["random"]).float().mean().item()
    # saliency on the built model is reported, not required: its gradient is the same (1/(9·400)) at every
    # pixel where the blurred channel is positive, noise included, so its maximum is not localised
    held = built["gradcam_peak_class0"] and built["gradcam_peak_class1"] and \
        auc["Grad-CAM (last stage)"].mean() < auc["random"].mean()
    metrics = {"auc_gradcam": auc["Grad-CAM (last stage)"].mean().item(),
               "auc_gradcam_first_stage": auc["Grad-CAM (first stage)"].mean().item(),
               "auc_saliency": auc["saliency"].mean().item(), "auc_smoothgrad": auc["SmoothGrad"].mean().item(),
               "auc_random": auc["random"].mean().item(), "gradcam_beats_random_fraction": wins,
               "resnet_test_accuracy": r["test_accuracy"], "n_images": cfg.n_images, **built, **vit_metrics}
    return Verdict(held, metrics, notes=f"{cfg.n_images} test images, {cfg.deletion_steps} deletion steps, pixels set "
                                        f"to the black background; Grad-CAM beats random on {wins:.0%} of the images")
