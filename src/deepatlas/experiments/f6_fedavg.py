"""F6: FedAvg over label-skewed clients vs centralised training with the same compute.

Setting (full): 10 clients, each holding only 2 of the 10 Fashion-MNIST classes (McMahan et al.'s
"pathological non-IID" split), a 20 000-image random training subset shared out among them (the same
20 000 images are the centralised side's pool), MLP 784-200-10 (the paper's 2NN, narrower), all
clients every round (C = 1), E = 1 local epoch, B = 50, plain SGD with η_t = 0.1·0.98^t, 80 rounds.
The subset makes a round 3× cheaper than on all 60 000 images, so the budget buys 80 rounds instead
of ~27; non-IID FedAvg is limited by rounds (client drift), centralised SGD by data.

Baseline: the same model, initial weights, B and η_t on the pooled 20 000 images, C·E = 1 epoch per
round, i.e. exactly as many example-gradients as all clients together (asserted by the test). It is
also converged: its accuracy is flat (0.87–0.88) from about round 20 on.

Measured (seed 0, 2-core machine shared with other jobs, one torch thread; time is wall-clock of
`deepatlas run fedavg key=value`, load average 3–12 so times vary ~2×), ratio = FedAvg / centralised
test accuracy, each the mean of the last 3 rounds:

    60 000 images, 40 rounds, η 0.05            (old default)   0.788 / 0.888 = 0.887   ~577 s
    20 000 images, 100 rounds, η 0.05                            0.805 / 0.875 = 0.921    133 s
    20 000 images, 100 rounds, η 0.1·0.98^t                      0.809 / 0.876 = 0.923    213 s
    20 000 images, 100 rounds, η 0.05, FedAvgM β = 0.5           0.818 / 0.875 = 0.935    228 s
    20 000 images, 60 rounds, E = 2, η 0.05                      0.792 / 0.874 = 0.906    246 s
    20 000 images, 80 rounds, η 0.1·0.98^t     (default)         0.804 / 0.875 = 0.918    245 s
    20 000 images, 80 rounds, η 0.1·0.98^t, seed 1                0.806 / 0.873 = 0.924    217 s
    20 000 images, 80 rounds, η 0.05·0.99^t, FedAvgM β = 0.5      0.812 / 0.876 = 0.927    183 s

Plain FedAvg with a decaying η is the default: it holds on both seeds tried with a ~0.02 margin,
and the claim is about FedAvg itself; FedAvgM (server_momentum=0.5) adds about 0.01 to the ratio.
More local work per round (E = 2) bought less than more rounds. Without the lr decay (η 0.05) the
FedAvg curve still wobbles ±0.01 round to round; with it the last rounds are smooth.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from deepatlas.core.registry import Verdict, experiment  # noqa: E402
from deepatlas.core.runs import Run  # noqa: E402
from deepatlas.data.fashion_mnist import fashion_mnist_float  # noqa: E402
from deepatlas.foundations.federated import (Client, fedavg, label_skew_split,  # noqa: E402
                                              round_lr, sgd_epochs)
from deepatlas.foundations.mlp import MLP  # noqa: E402


@dataclass
class Config:
    n_train: int = 20000          # Fashion-MNIST training images used (a random subset, both sides)
    n_test: int = 10000
    clients: int = 10             # K
    classes_per_client: int = 2   # label skew: each client sees only 2 of the 10 classes
    fraction: float = 1.0         # C: share of clients asked each round
    rounds: int = 80
    local_epochs: int = 1         # E
    batch_size: int = 50          # B
    lr: float = 0.1               # η, plain SGD (as in the paper)
    lr_decay: float = 0.98        # γ: round t uses η·γ^t, on both sides
    server_momentum: float = 0.0  # β > 0: FedAvgM (Hsu et al. 2019); 0 is plain FedAvg
    hidden: int = 200             # MLP 784-hidden-10
    target_ratio: float = 0.9     # claim: FedAvg accuracy ≥ 0.9 × centralised accuracy
    seed: int = 0


def mean_last(values: list[float], k: int = 3) -> float:
    """Mean of the last k evaluations: one evaluation after an SGD epoch is noisy (±2 points)."""
    return sum(values[-k:]) / len(values[-k:])


@experiment("F6", "fedavg",
            claim="FedAvg over 10 clients that each hold only 2 of the 10 Fashion-MNIST classes reaches "
                  "≥ 90% of the test accuracy of centralised training with the same compute, while "
                  "only model weights leave the clients",
            config=Config, quick={"n_train": 3000, "n_test": 2000, "rounds": 25}, one_thread=True,
            headline={"ratio": ("FedAvg / centralised accuracy", "{:.3f}"),
                      "fedavg_accuracy": ("FedAvg test accuracy", "{:.1%}"),
                      "central_accuracy": ("centralised", "{:.1%}")})
def fedavg_experiment(cfg: Config, run: Run) -> Verdict:
    x, y = fashion_mnist_float("train", flatten=True)
    xt, yt = fashion_mnist_float("test", flatten=True)
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))[:cfg.n_train]
    x, y, xt, yt = x[keep], y[keep], xt[:cfg.n_test], yt[:cfg.n_test]

    def make_model() -> nn.Module:
        return MLP([x.shape[1], cfg.hidden, 10])

    def accuracy(model: nn.Module) -> float:
        with torch.no_grad():
            return (model(xt).argmax(-1) == yt).float().mean().item()

    parts = label_skew_split(y, cfg.clients, cfg.classes_per_client, cfg.seed)
    clients = [Client(k, x[idx], y[idx], make_model) for k, idx in enumerate(parts)]
    run.print("clients' classes:", [c.labels_held() for c in clients])
    torch.manual_seed(cfg.seed)
    global_model = make_model()
    initial = {k: v.clone() for k, v in global_model.state_dict().items()}

    history = fedavg(global_model, clients, cfg.rounds, cfg.fraction, cfg.local_epochs,
                     cfg.batch_size, cfg.lr, accuracy, cfg.seed,
                     on_round=lambda t, acc: run.log(round=t + 1, fedavg_accuracy=acc),
                     lr_decay=cfg.lr_decay, server_momentum=cfg.server_momentum)

    # centralised baseline: the same model, initial weights, SGD, B and η_t on the pooled data,
    # C·E epochs per "round" — the same number of example-gradients as the clients together
    central = make_model()
    central.load_state_dict(initial)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    epochs = max(1, round(cfg.fraction * cfg.local_epochs))
    central_acc, central_examples = [], 0
    for t in range(cfg.rounds):
        central_examples += sgd_epochs(central, x, y, epochs, cfg.batch_size,
                                       round_lr(cfg.lr, cfg.lr_decay, t), gen)
        central_acc.append(accuracy(central))
        run.log(round=t + 1, central_accuracy=central_acc[-1])

    fed, cen = mean_last(history.accuracy), mean_last(central_acc)
    ratio = fed / cen
    run.print(f"FedAvg {fed:.3f} vs centralised {cen:.3f} test accuracy (mean of last 3 rounds): "
              f"ratio {ratio:.3f}; examples processed {history.examples[-1]} vs {central_examples}")
    method = f"FedAvgM β={cfg.server_momentum}" if cfg.server_momentum > 0 else "FedAvg"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rounds = range(1, cfg.rounds + 1)
    ax.plot(rounds, history.accuracy, "-o", ms=3, label=f"{method}, {cfg.clients} clients × "
            f"{cfg.classes_per_client} classes")
    ax.plot(rounds, central_acc, "-s", ms=3, label="centralised, same examples processed")
    ax.axhline(cfg.target_ratio * cen, color="grey", ls=":", label=f"{cfg.target_ratio:.0%} of centralised")
    ax.set(xlabel="round (= C·E epochs of compute)", ylabel="test accuracy",
           title=f"{method} on label-skewed Fashion-MNIST ({cfg.n_train} train images)\n"
                 f"E={cfg.local_epochs}, B={cfg.batch_size}, η_t={cfg.lr}·{cfg.lr_decay}^t")
    ax.legend()
    run.savefig(fig, "accuracy_vs_round")
    return Verdict(held=ratio >= cfg.target_ratio, metrics={
        "fedavg_accuracy": fed, "central_accuracy": cen, "ratio": ratio,
        "fedavg_best": max(history.accuracy), "central_best": max(central_acc),
        "fedavg_examples": history.examples[-1], "central_examples": central_examples,
        "rounds": cfg.rounds, "clients": cfg.clients}, notes=(
        f"{cfg.n_train} training images (both sides), {cfg.clients} clients × "
        f"{cfg.classes_per_client} classes, E={cfg.local_epochs}, B={cfg.batch_size}, "
        f"η_t={cfg.lr}·{cfg.lr_decay}^t, {method}; test accuracy, mean of the last 3 of {cfg.rounds} "
        f"rounds: {method} {fed:.3f}, centralised {cen:.3f}, ratio {ratio:.3f} (claim ≥ "
        f"{cfg.target_ratio}); baseline: same model, init, B, η_t and example-gradient count "
        f"({central_examples}) on the pooled data, best {max(central_acc):.3f}; clients exchanged "
        f"only state dicts"))
