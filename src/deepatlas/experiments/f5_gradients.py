"""F5: per-layer gradient norms of deep sigmoid vs ReLU vs residual + LayerNorm nets, on real data."""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from deepatlas.core.registry import Verdict, experiment  # noqa: E402
from deepatlas.core.runs import Run  # noqa: E402
from deepatlas.foundations.gradients import NET_KINDS, deep_net, layer_gradient_norms  # noqa: E402

DATASETS = ("fashion-mnist", "digits")


@dataclass
class Config:
    dataset: str = "fashion-mnist"  # fashion-mnist | digits
    n_train: int = 10000            # training images used (a subsample keeps it minutes on a CPU)
    depth: int = 20                 # hidden layers
    width: int = 64
    batch_size: int = 256
    steps: int = 300                # SGD steps per net, after which the norms are measured again
    lr: float = 0.01                # 0.05 kills the plain ReLU net (all units dead) on FMNIST
    momentum: float = 0.9
    vanish_below: float = 1e-3      # claim: sigmoid ‖g_first‖ / ‖g_last‖ below this
    residual_within: float = 10.0   # claim: residual ratio within this factor of 1
    seed: int = 0


def load(cfg: Config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    if cfg.dataset not in DATASETS:
        raise ValueError(f"dataset {cfg.dataset!r}; valid: {', '.join(DATASETS)}")
    if cfg.dataset == "digits":
        from deepatlas.data.digits import load_digits_tensors
        return load_digits_tensors()
    from deepatlas.data.fashion_mnist import fashion_mnist_float
    x, y = fashion_mnist_float("train", flatten=True)
    xt, yt = fashion_mnist_float("test", flatten=True)
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.n_train]
    return x[keep], y[keep], xt, yt


def mean_norms(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> list[float]:
    """Per-layer gradient norms averaged over up to 4 fixed batches (one batch is noisy)."""
    runs = [layer_gradient_norms(net, x[i:i + batch_size], y[i:i + batch_size])
            for i in range(0, min(len(x), 4 * batch_size), batch_size)]
    return [sum(r[k] for r in runs) / len(runs) for k in range(len(runs[0]))]


@experiment("F5", "vanishing-gradients",
            claim="in a 20-layer plain sigmoid net the first layer's gradient is orders of magnitude "
                  "(< 1e-3×) smaller than the last layer's; with residual connections + LayerNorm "
                  "the first and last stay within 10× of each other",
            config=Config, quick={"dataset": "digits", "steps": 60, "batch_size": 128}, one_thread=True,
            headline={"sigmoid_first_over_last_trained": ("sigmoid: first / last layer grad", "{:.1e}"),
                      "relu_first_over_last_trained": ("ReLU", "{:.2f}"),
                      "residual_first_over_last_trained": ("residual + LayerNorm", "{:.2f}")})
def vanishing_gradients(cfg: Config, run: Run) -> Verdict:
    x, y, xt, yt = load(cfg)
    n_classes = int(y.max()) + 1
    gen = torch.Generator().manual_seed(cfg.seed)
    norms, losses, accuracy = {}, {}, {}
    for kind in NET_KINDS:
        net = deep_net(kind, x.shape[1], n_classes, cfg.width, cfg.depth, cfg.seed)
        norms[kind, "init"] = mean_norms(net, x, y, cfg.batch_size)
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        losses[kind] = []
        for step in range(cfg.steps):
            idx = torch.randint(0, len(x), (cfg.batch_size,), generator=gen)
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[kind].append(loss.item())
            run.log(net=kind, step=step, loss=loss.item())
        norms[kind, "trained"] = mean_norms(net, x, y, cfg.batch_size)
        with torch.no_grad():
            accuracy[kind] = (net(xt).argmax(-1) == yt).float().mean().item()
        ratio = norms[kind, "init"][0] / norms[kind, "init"][-1]
        run.print(f"{kind:9s} first/last gradient norm at init {ratio:.2e}, after "
                  f"{cfg.steps} steps {norms[kind, 'trained'][0] / norms[kind, 'trained'][-1]:.2e}; "
                  f"test accuracy {accuracy[kind]:.3f}")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for kind, colour in zip(NET_KINDS, ("tab:red", "tab:blue", "tab:green")):
        for when, style in (("init", "-o"), ("trained", "--")):
            values = norms[kind, when]
            axes[0 if when == "init" else 1].semilogy(range(1, len(values) + 1), values, style,
                                                      color=colour, ms=3, label=kind)
        axes[2].plot(losses[kind], color=colour, label=f"{kind} (test acc {accuracy[kind]:.2f})")
    for ax, title in zip(axes[:2], ("at initialisation", f"after {cfg.steps} SGD steps")):
        ax.set(xlabel="layer (1 = input side)", ylabel="‖∂L/∂W‖ (log scale)", title=title)
        ax.legend()
    axes[2].set(xlabel="step", ylabel="training loss", title="training loss")
    axes[2].axhline(math.log(n_classes), color="grey", lw=0.8, ls=":")
    axes[2].legend()
    fig.suptitle(f"per-layer gradient norms of {cfg.depth}-hidden-layer nets on {cfg.dataset}")
    run.savefig(fig, "gradient_norms")

    metrics = {"dataset": cfg.dataset, "depth": cfg.depth}
    for (kind, when), values in norms.items():
        metrics[f"{kind}_first_over_last_{when}"] = values[0] / values[-1]
    for kind in NET_KINDS:
        metrics[f"{kind}_final_loss"] = sum(losses[kind][-10:]) / len(losses[kind][-10:])
        metrics[f"{kind}_test_accuracy"] = accuracy[kind]
    vanishes = all(metrics[f"sigmoid_first_over_last_{w}"] < cfg.vanish_below for w in ("init", "trained"))
    residual_ok = all(1 / cfg.residual_within <= metrics[f"residual_first_over_last_{w}"]
                      <= cfg.residual_within for w in ("init", "trained"))
    return Verdict(held=vanishes and residual_ok, metrics=metrics,
                   notes=f"‖∂L/∂W_first‖ / ‖∂L/∂W_last‖, mean over 4 batches, at init and after "
                         f"{cfg.steps} SGD steps: sigmoid {metrics['sigmoid_first_over_last_init']:.1e} / "
                         f"{metrics['sigmoid_first_over_last_trained']:.1e}, relu "
                         f"{metrics['relu_first_over_last_init']:.2f} / "
                         f"{metrics['relu_first_over_last_trained']:.2f}, residual+LN "
                         f"{metrics['residual_first_over_last_init']:.2f} / "
                         f"{metrics['residual_first_over_last_trained']:.2f}")
