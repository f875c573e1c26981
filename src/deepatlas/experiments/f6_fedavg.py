"""F6: FedAvg over label-skewed clients vs centralised training with the same compute."""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from deepatlas.core.registry import Verdict, experiment  # noqa: E402
from deepatlas.core.runs import Run  # noqa: E402
from deepatlas.foundations.threads import one_thread  # noqa: E402
from deepatlas.data.fashion_mnist import fashion_mnist_float  # noqa: E402
from deepatlas.foundations.federated import Client, fedavg, label_skew_split, sgd_epochs  # noqa: E402
from deepatlas.foundations.mlp import MLP  # noqa: E402


@dataclass
class Config:
    n_train: int = 60000          # Fashion-MNIST training images used (all by default)
    n_test: int = 10000
    clients: int = 10             # K
    classes_per_client: int = 2   # label skew: each client sees only 2 of the 10 classes
    fraction: float = 1.0         # C: share of clients asked each round
    rounds: int = 40
    local_epochs: int = 1         # E
    batch_size: int = 50          # B
    lr: float = 0.05              # η, plain SGD (as in the paper)
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
            config=Config, quick={"n_train": 3000, "n_test": 2000, "rounds": 25})
def fedavg_experiment(cfg: Config, run: Run) -> Verdict:
    with one_thread():  # tiny matmuls: a second thread only adds contention (10× CPU measured)
        return _measure(cfg, run)


def _measure(cfg: Config, run: Run) -> Verdict:
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
                     on_round=lambda t, acc: run.log(round=t + 1, fedavg_accuracy=acc))

    # centralised baseline: the same model, initial weights, SGD, B and η on the pooled data,
    # C·E epochs per "round" — the same number of examples processed as the clients together
    central = make_model()
    central.load_state_dict(initial)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    epochs = max(1, round(cfg.fraction * cfg.local_epochs))
    central_acc, central_examples = [], 0
    for t in range(cfg.rounds):
        central_examples += sgd_epochs(central, x, y, epochs, cfg.batch_size, cfg.lr, gen)
        central_acc.append(accuracy(central))
        run.log(round=t + 1, central_accuracy=central_acc[-1])

    fed, cen = mean_last(history.accuracy), mean_last(central_acc)
    ratio = fed / cen
    run.print(f"FedAvg {fed:.3f} vs centralised {cen:.3f} test accuracy (mean of last 3 rounds): "
              f"ratio {ratio:.3f}; examples processed {history.examples[-1]} vs {central_examples}")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rounds = range(1, cfg.rounds + 1)
    ax.plot(rounds, history.accuracy, "-o", ms=3, label=f"FedAvg, {cfg.clients} clients × "
            f"{cfg.classes_per_client} classes")
    ax.plot(rounds, central_acc, "-s", ms=3, label="centralised, same examples processed")
    ax.axhline(cfg.target_ratio * cen, color="grey", ls=":", label=f"{cfg.target_ratio:.0%} of centralised")
    ax.set(xlabel="round (= C·E epochs of compute)", ylabel="test accuracy",
           title=f"FedAvg on label-skewed Fashion-MNIST ({cfg.n_train} train images)")
    ax.legend()
    run.savefig(fig, "accuracy_vs_round")
    return Verdict(held=ratio >= cfg.target_ratio, metrics={
        "fedavg_accuracy": fed, "central_accuracy": cen, "ratio": ratio,
        "fedavg_best": max(history.accuracy), "central_best": max(central_acc),
        "fedavg_examples": history.examples[-1], "central_examples": central_examples,
        "rounds": cfg.rounds, "clients": cfg.clients}, notes=(
        f"{cfg.n_train} training images; test accuracy, mean of the last 3 of {cfg.rounds} rounds: "
        f"FedAvg {fed:.3f}, centralised "
        f"{cen:.3f}, ratio {ratio:.3f} (claim ≥ {cfg.target_ratio}); clients exchanged only state dicts"))
