"""F7: MC dropout against F2's Gaussian NLL and a deep ensemble; EMA of weights; GroupNorm/InstanceNorm.

Part A — uncertainty on F2's heteroscedastic task (y = sin 3x + σ(x)ε, σ(x) = 0.05 + 0.25x, x ∈ [0, 2]):
  * MC dropout (Gal & Ghahramani 2016): an MSE-trained MLP with dropout kept on at test time, T samples;
    the spread of the samples is the model's (epistemic) uncertainty; eq. (8)'s predictive variance adds
    a noise term τ⁻¹, here one constant: the training residual variance;
  * F2's GaussianMLP trained by the Gaussian NLL, predicting σ²(x) (aleatoric noise);
  * a deep ensemble (Lakshminarayanan et al. 2017, eq. 5 ff.): M GaussianMLPs from different seeds,
    the mixture's mean μ* = mean μ_m and variance σ*² = mean(σ²_m + μ²_m) − μ*².
  Measured on held-out data: 95% coverage overall and per quarter of x, and the test NLL. The claim:
  dropout's spread alone covers far too little (it does not see the noise), with a constant noise term
  it is miscalibrated per region (one σ for noise that varies 11-fold), while the NLL model is
  calibrated per region and has the lower test NLL.
Part B — EMA of weights (deepatlas.foundations.ema) equals torch's AveragedModel(get_ema_multi_avg_fn)
  along a real training run (an MLP on Fashion-MNIST, SGD with a constant learning rate); the val loss
  of the averaged and of the raw weights at equal steps is measured and reported; the same for a small
  character GPT (models.gpt) on Austen trained by AdamW at a constant learning rate.
Part C — GroupNorm and InstanceNorm (deepatlas.foundations.group_norm) equal torch's in train and eval
  modes (outputs, input/parameter gradients, running statistics), max |diff| ≤ 1e-5.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.experiments.f2_mlp_uncertainty import Z95, heteroscedastic
from deepatlas.experiments.f4_regularisation import _max_diff
from deepatlas.foundations.ema import EMA
from deepatlas.foundations.group_norm import GroupNorm, InstanceNorm
from deepatlas.foundations.losses import cross_entropy, gaussian_nll_logvar, mse
from deepatlas.foundations.mlp import MLP, GaussianMLP
from deepatlas.foundations.optim import SGD


@dataclass
class Config:
    reg_train: int = 2000
    reg_test: int = 8000
    reg_steps: int = 2000
    hidden: int = 32
    dropout_hidden: int = 128
    dropout: float = 0.1
    mc_samples: int = 100
    ensemble: int = 5
    lr: float = 3e-3
    regions: int = 4
    coverage_tol: float = 0.04
    ema_train: int = 10000
    ema_steps: int = 3000
    ema_decay: float = 0.995
    ema_lr: float = 0.1
    ema_batch: int = 32
    ema_eval_every: int = 100
    gpt_chars: int = 500_000        # the first n characters of Austen for the GPT part
    gpt_steps: int = 800
    gpt_lr: float = 3e-3
    gpt_ema_decay: float = 0.99
    gpt_eval_every: int = 50
    seed: int = 0


def _gaussian_nll(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    # −log N(y; μ, σ²) = ½ log 2πσ² + (y − μ)²/2σ², averaged
    return float(np.mean(0.5 * np.log(2 * np.pi * std ** 2) + 0.5 * ((y - mean) / std) ** 2))


def _train_gaussian(x, y, cfg: Config, seed: int) -> GaussianMLP:
    torch.manual_seed(seed)
    net = GaussianMLP(1, hidden=cfg.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    for _ in range(cfg.reg_steps):
        mu, log_var = net(x)
        loss = gaussian_nll_logvar(mu, log_var, y)                         # ½(log σ² + (y − μ)²/σ²)
        opt.zero_grad(); loss.backward(); opt.step()
    return net


def uncertainty(cfg: Config, run: Run) -> tuple[dict, dict]:
    rng = np.random.default_rng(cfg.seed)
    xr, yr, _ = heteroscedastic(cfg.reg_train, rng)
    xt, yt, sig_t = heteroscedastic(cfg.reg_test, rng)
    X, Y = torch.tensor(xr, dtype=torch.float32)[:, None], torch.tensor(yr, dtype=torch.float32)
    Xt = torch.tensor(xt, dtype=torch.float32)[:, None]

    torch.manual_seed(cfg.seed)
    drop = MLP([1, cfg.dropout_hidden, cfg.dropout_hidden, 1], activation="relu", dropout=cfg.dropout)
    opt = torch.optim.Adam(drop.parameters(), lr=cfg.lr)
    for _ in range(cfg.reg_steps):
        loss = mse(drop(X).squeeze(-1), Y)
        opt.zero_grad(); loss.backward(); opt.step()
    drop.train()                                              # dropout stays on at test time
    with torch.no_grad():
        samples = torch.stack([drop(Xt).squeeze(-1) for _ in range(cfg.mc_samples)]).double().numpy()  # (T, N)
        train_mean = torch.stack([drop(X).squeeze(-1) for _ in range(cfg.mc_samples)]).mean(0)
    noise_var = float((train_mean - Y).pow(2).mean())         # τ⁻¹: one noise variance for all x
    mc_mean, mc_var = samples.mean(0), samples.var(0)         # Gal & Ghahramani 2016 eq. (8) without / with τ⁻¹

    nets = [_train_gaussian(X, Y, cfg, cfg.seed + m) for m in range(cfg.ensemble)]
    with torch.no_grad():
        outs = [tuple(t.double().numpy() for t in net(Xt)) for net in nets]
    mus = np.stack([o[0] for o in outs])                     # (M, N)
    vars_ = np.exp(np.stack([o[1] for o in outs]))           # σ²_m(x)
    ens_mean = mus.mean(0)
    ens_var = (vars_ + mus ** 2).mean(0) - ens_mean ** 2     # mixture variance

    predictions = {"mc_dropout": (mc_mean, np.sqrt(mc_var)),
                   "mc_dropout+noise": (mc_mean, np.sqrt(mc_var + noise_var)),
                   "gaussian_nll": (mus[0], np.sqrt(vars_[0])),
                   "deep_ensemble": (ens_mean, np.sqrt(ens_var))}
    edges = np.linspace(0, 2, cfg.regions + 1)
    region = np.clip(np.digitize(xt, edges) - 1, 0, cfg.regions - 1)
    results = {}
    for name, (mean, std) in predictions.items():
        inside = np.abs(yt - mean) <= Z95 * std
        per = [float(inside[region == r].mean()) for r in range(cfg.regions)]
        results[name] = {"coverage": float(inside.mean()), "coverage_per_region": per,
                         "worst_region_gap": max(abs(c - 0.95) for c in per),
                         "nll": _gaussian_nll(yt, mean, std)}
        run.log(part="uncertainty", model=name, **results[name])
        run.print(f"{name:17s} coverage {results[name]['coverage']:.3f} per region "
                  f"{[round(c, 3) for c in per]} test NLL {results[name]['nll']:.3f}")
    return results, {"x": xt, "y": yt, "sigma": sig_t, "pred": predictions}


def ema_run(cfg: Config, run: Run) -> dict:
    """Train an MLP on Fashion-MNIST with constant-lr SGD; raw vs EMA val loss; EMA vs AveragedModel."""
    from deepatlas.data.fashion_mnist import fashion_mnist_float
    x_all, y_all = fashion_mnist_float("train", flatten=True)
    g = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(x_all), generator=g)
    tr, va = perm[:cfg.ema_train], perm[cfg.ema_train:cfg.ema_train + 5000]
    x_tr, y_tr, x_va, y_va = x_all[tr], y_all[tr], x_all[va], y_all[va]
    torch.manual_seed(cfg.seed)
    model = MLP([784, 128, 10], activation="relu")
    ema = EMA(model, cfg.ema_decay)
    ref = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    opt = SGD(model.parameters(), lr=cfg.ema_lr)
    order = torch.randint(0, len(x_tr), (cfg.ema_steps, cfg.ema_batch), generator=g)
    curve = {"step": [], "raw": [], "ema": []}
    for step in range(cfg.ema_steps):
        loss = cross_entropy(model(x_tr[order[step]]), y_tr[order[step]])
        opt.zero_grad(); loss.backward(); opt.step()
        ema.update(model); ref.update_parameters(model)
        if (step + 1) % cfg.ema_eval_every == 0:
            with torch.no_grad():
                raw, avg = cross_entropy(model(x_va), y_va).item(), cross_entropy(ema.module(x_va), y_va).item()
            curve["step"].append(step + 1); curve["raw"].append(raw); curve["ema"].append(avg)
            run.log(part="ema", step=step + 1, val_loss_raw=raw, val_loss_ema=avg)
    parity = max((a - b).abs().max().item() for a, b in zip(ema.module.parameters(), ref.module.parameters()))
    with torch.no_grad():
        acc = {k: float((m(x_va).argmax(1) == y_va).float().mean()) for k, m in (("raw", model), ("ema", ema.module))}
    # the last quarter of the run: the mean val loss gap, when both have settled
    tail = max(1, len(curve["step"]) // 4)
    gap = float(np.mean(np.array(curve["raw"][-tail:]) - np.array(curve["ema"][-tail:])))
    run.print(f"EMA (α = {cfg.ema_decay}) vs AveragedModel max |diff| {parity:.1e}; val loss at step "
              f"{cfg.ema_steps}: raw {curve['raw'][-1]:.4f}, EMA {curve['ema'][-1]:.4f} (last-quarter mean gap "
              f"{gap:+.4f}); val acc raw {acc['raw']:.4f}, EMA {acc['ema']:.4f}")
    return {"parity": parity, "curve": curve, "gap": gap, "acc": acc}


def gpt_ema(cfg: Config, run: Run) -> dict:
    """A small character GPT (models.gpt, 2 layers × 64 dims) on Austen with constant-lr AdamW: the val loss of
    the raw and of the EMA weights at equal steps (one training run, both evaluated on the same batches)."""
    from deepatlas.data.austen import austen_corpus
    from deepatlas.data.lm import char_lm_dataset
    from deepatlas.models.gpt import GPT, GPTConfig, lm_loss
    tok, data = char_lm_dataset(austen_corpus()[:cfg.gpt_chars])
    torch.manual_seed(cfg.seed)
    model = GPT(GPTConfig(vocab_size=len(tok), block_size=64, n_layer=2, n_head=2, n_embd=64))
    ema = EMA(model, cfg.gpt_ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.gpt_lr, weight_decay=0.0)
    get = data.batch_fn("train", 16, 64, cfg.seed)
    val_batches = [data.get_batch("val", i, 0, 32, 64, seed=10_000) for i in range(8)]

    def val_loss(m: nn.Module) -> float:
        m.eval()
        with torch.no_grad():
            out = float(torch.stack([lm_loss(m, b) for b in val_batches]).mean())
        m.train()
        return out

    curve = {"step": [], "raw": [], "ema": []}
    for step in range(cfg.gpt_steps):
        loss = lm_loss(model, get(step, 0))
        opt.zero_grad(); loss.backward(); opt.step()
        ema.update(model)
        if (step + 1) % cfg.gpt_eval_every == 0:
            curve["step"].append(step + 1); curve["raw"].append(val_loss(model)); curve["ema"].append(val_loss(ema.module))
            run.log(part="gpt_ema", step=step + 1, val_loss_raw=curve["raw"][-1], val_loss_ema=curve["ema"][-1])
    run.print(f"GPT (2×64, constant lr {cfg.gpt_lr}) val loss at step {cfg.gpt_steps}: raw {curve['raw'][-1]:.4f}, "
              f"EMA α = {cfg.gpt_ema_decay} {curve['ema'][-1]:.4f} nats/char")
    return curve


def norm_parity(seed: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    cases = (("groupnorm_g2", GroupNorm(2, 8), nn.GroupNorm(2, 8), (4, 8, 5, 5)),
             ("groupnorm_g1", GroupNorm(1, 8), nn.GroupNorm(1, 8), (4, 8, 7)),
             ("instancenorm2d", InstanceNorm(8, affine=True), nn.InstanceNorm2d(8, affine=True), (4, 8, 5, 5)),
             ("instancenorm_tracked", InstanceNorm(8, affine=True, track_running_stats=True),
              nn.InstanceNorm2d(8, affine=True, track_running_stats=True), (4, 8, 5, 5)))
    for name, ours, ref, shape in cases:
        with torch.no_grad():
            ours.weight.normal_(generator=g); ours.bias.normal_(generator=g)
        ref.load_state_dict(ours.state_dict())
        train = max(_max_diff(ours.train(), ref.train(), torch.randn(shape, generator=g) * 3 + 1) for _ in range(4))
        stats = max([(a - b).abs().max().item() for a, b in zip(ours.buffers(), ref.buffers())], default=0.0)
        out[f"{name}_train"] = max(train, stats)
        out[f"{name}_eval"] = _max_diff(ours.eval(), ref.eval(), torch.randn(shape, generator=g))
    return out


@experiment("F7", "mc-dropout-ema-norms",
            claim="on F2's heteroscedastic task MC dropout's spread covers far less than 95% and, with one noise "
                  "term, is miscalibrated per region (worst gap > 0.09), while F2's Gaussian-NLL model is calibrated "
                  "per region (±0.04) with a lower test NLL; our EMA of weights equals torch's AveragedModel on a "
                  "real training run (≤ 1e-6) and GroupNorm/InstanceNorm equal torch's (≤ 1e-5)",
            config=Config, quick={"reg_train": 1000, "reg_test": 6000, "reg_steps": 800, "mc_samples": 50,
                                  "ensemble": 2, "dropout_hidden": 64, "ema_train": 4000, "ema_steps": 600, "ema_decay": 0.98,
                                  "ema_eval_every": 50, "gpt_chars": 200_000, "gpt_steps": 120, "gpt_eval_every": 40,
                                  "gpt_ema_decay": 0.95},
            one_thread=True,
            headline={"coverage_mc_dropout": ("MC dropout coverage", "{:.1%}"),
                      "worst_gap_mc_dropout_noise": ("MC dropout+noise worst region gap", "{:.3f}"),
                      "worst_gap_gaussian_nll": ("Gaussian NLL worst region gap", "{:.3f}"),
                      "ema_val_loss_gap": ("val loss raw − EMA", "{:+.4f}"),
                      "gpt_val_loss_gap": ("GPT val loss raw − EMA", "{:+.4f} nats/char")})
def mc_dropout_ema_norms(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.time()
    res, data = uncertainty(cfg, run)
    ema = ema_run(cfg, run)
    gpt = gpt_ema(cfg, run)
    norms = norm_parity(cfg.seed)
    worst_norm = max(norms.values())
    run.print("GroupNorm/InstanceNorm max |ours − torch|: " + ", ".join(f"{k} {v:.1e}" for k, v in norms.items()))

    fig, axes = plt.subplots(1, 4, figsize=(19, 4.3))
    xt, order = data["x"], np.argsort(data["x"])
    colors = dict(zip(res, ("C3", "C1", "C0", "C2")))
    for name, (mean, std) in data["pred"].items():
        c = colors[name]
        axes[0].plot(xt[order], (Z95 * std)[order], c=c,
                     label=f"{name}: cov {res[name]['coverage']:.2f}, NLL {res[name]['nll']:.2f}")
    axes[0].plot(xt[order], Z95 * data["sigma"][order], "k:", label="true 1.96σ(x)")
    axes[0].set(xlabel="x", ylabel="half-width of the 95% interval", title="uncertainty on F2's task")
    axes[0].legend(fontsize=7)
    width = 0.2
    for i, name in enumerate(res):
        axes[1].bar(np.arange(cfg.regions) + (i - 1.5) * width, res[name]["coverage_per_region"], width, label=name,
                    color=colors[name])
    axes[1].axhline(0.95, c="k", ls=":")
    axes[1].set(xlabel="quarter of the x range", ylabel="coverage of the 95% interval", ylim=(0, 1.05),
                title="calibration per region")
    axes[1].legend(fontsize=7, loc="lower left")
    c = ema["curve"]
    axes[2].plot(c["step"], c["raw"], label=f"raw weights (acc {ema['acc']['raw']:.3f})")
    axes[2].plot(c["step"], c["ema"], label=f"EMA α={cfg.ema_decay} (acc {ema['acc']['ema']:.3f})")
    axes[2].set(xlabel="SGD step (lr constant)", ylabel="val cross-entropy", title="Fashion-MNIST MLP: EMA of weights",
                ylim=(min(c["ema"] + c["raw"]) * 0.95, min(2.5, max(c["raw"][len(c["raw"]) // 5:]) * 1.1)))
    axes[2].legend()
    axes[3].plot(gpt["step"], gpt["raw"], label="raw weights")
    axes[3].plot(gpt["step"], gpt["ema"], label=f"EMA α={cfg.gpt_ema_decay}")
    axes[3].set(xlabel="AdamW step (lr constant)", ylabel="val loss (nats/char)", title="char GPT on Austen: EMA",
                ylim=(min(gpt["ema"] + gpt["raw"]) * 0.97, max(gpt["raw"][len(gpt["raw"]) // 4:]) * 1.03))
    axes[3].legend()
    run.savefig(fig, "mc_dropout_ema")

    metrics = {}
    for name, r in res.items():
        key = name.replace("+", "_")
        metrics.update({f"coverage_{key}": r["coverage"], f"worst_gap_{key}": r["worst_region_gap"],
                        f"nll_{key}": r["nll"], f"coverage_per_region_{key}": r["coverage_per_region"]})
    metrics.update({f"maxdiff_{k}": v for k, v in norms.items()})
    metrics.update(ema_parity=ema["parity"], ema_val_loss_gap=ema["gap"], ema_val_acc=ema["acc"]["ema"],
                   raw_val_acc=ema["acc"]["raw"], ema_val_loss_final=ema["curve"]["ema"][-1],
                   raw_val_loss_final=ema["curve"]["raw"][-1], gpt_val_loss_raw=gpt["raw"][-1],
                   gpt_val_loss_ema=gpt["ema"][-1], gpt_val_loss_gap=gpt["raw"][-1] - gpt["ema"][-1],
                   seconds=time.time() - start)
    nll_ok = res["gaussian_nll"]["nll"] < min(res["mc_dropout"]["nll"], res["mc_dropout+noise"]["nll"])
    held = (res["mc_dropout"]["coverage"] < 0.8 and res["mc_dropout+noise"]["worst_region_gap"] > 0.09
            and res["gaussian_nll"]["worst_region_gap"] <= cfg.coverage_tol and nll_ok
            and ema["parity"] <= 1e-6 and worst_norm <= 1e-5 and all(map(math.isfinite, norms.values())))
    return Verdict(held=held, metrics=metrics,
                   notes="held: MC-dropout spread coverage < 0.8, with constant noise worst region gap > 0.09, "
                         f"Gaussian-NLL worst gap ≤ {cfg.coverage_tol} and the lowest NLL of the three; EMA = "
                         "AveragedModel ≤ 1e-6; norms ≤ 1e-5. The deep ensemble and the EMA val-loss gaps (MLP, GPT) are "
                         "measured and reported, not part of the verdict")
