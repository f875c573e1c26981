"""F1: an MLP on our numpy autograd — its gradients equal torch.autograd's, and it learns digits."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.foundations.autograd import MLP, Tensor, softmax_cross_entropy


@dataclass
class Config:
    hidden: int = 64
    steps: int = 4000
    batch: int = 64
    lr: float = 0.1
    seed: int = 0
    grad_tol: float = 1e-8       # max |grad ours − grad torch| allowed (float64)
    min_accuracy: float = 0.90   # chance is 0.10 on 10 digits


def _torch_grads(mlp: MLP, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """Same MLP (weights copied) on torch.autograd, float64: loss and parameter gradients."""
    params = [torch.tensor(p.value, requires_grad=True) for p in mlp.parameters()]
    h = torch.tensor(x)
    for i in range(0, len(params), 2):
        h = h @ params[i].T + params[i + 1]                      # (N, out)
        if i < len(params) - 2:
            h = torch.relu(h)
    loss = F.cross_entropy(h, torch.tensor(y))
    loss.backward()
    return loss.item(), [p.grad.numpy() for p in params]


@experiment("F1", "autograd-mlp",
            claim="gradients of an MLP on our numpy autograd equal torch.autograd's (≤ 1e-8, float64) "
                  "and the MLP trained with them learns sklearn digits far above chance",
            config=Config, quick={"steps": 800}, one_thread=True,
            headline={"max_grad_diff": ("max |grad − torch.autograd|", "{:.1e}"),
                      "test_accuracy": ("digits test accuracy", "{:.1%}")})
def autograd_mlp(cfg: Config, run: Run) -> Verdict:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    digits = load_digits()                                        # 1797 8×8 images, bundled with sklearn
    x = digits.data / 16.0                                        # (N, 64) in [0, 1]
    x_tr, x_te, y_tr, y_te = train_test_split(x, digits.target, test_size=0.3, random_state=cfg.seed,
                                              stratify=digits.target)
    mlp = MLP([64, cfg.hidden, cfg.hidden, 10], activation="relu", seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    # 1) gradient parity on one batch, before training and after (both are measured)
    def grad_gap() -> float:
        idx = rng.choice(len(x_tr), cfg.batch, replace=False)
        mlp.zero_grad()
        loss = softmax_cross_entropy(mlp(Tensor(x_tr[idx])), y_tr[idx])
        loss.backward()
        loss_t, grads_t = _torch_grads(mlp, x_tr[idx], y_tr[idx])
        gaps = [np.abs(p.grad - g).max() for p, g in zip(mlp.parameters(), grads_t)]
        return max(max(gaps), abs(loss.value - loss_t))

    gap_init = grad_gap()

    # 2) train with plain minibatch SGD on our gradients
    start, losses = time.time(), []
    for step in range(cfg.steps):
        idx = rng.choice(len(x_tr), cfg.batch, replace=False)
        mlp.zero_grad()
        loss = softmax_cross_entropy(mlp(Tensor(x_tr[idx])), y_tr[idx])
        loss.backward()
        mlp.sgd_step(cfg.lr)
        losses.append(float(loss.value))
        if step % 50 == 0 or step == cfg.steps - 1:
            run.log(step=step, loss=float(loss.value))
    seconds = time.time() - start
    gap_trained = grad_gap()

    def accuracy(xs: np.ndarray, ys: np.ndarray) -> float:
        return float((mlp(Tensor(xs)).value.argmax(axis=1) == ys).mean())

    acc_te, acc_tr = accuracy(x_te, y_te), accuracy(x_tr, y_tr)
    max_gap = max(gap_init, gap_trained)
    run.print(f"max |grad ours − grad torch| = {max_gap:.2e} (init {gap_init:.1e}, trained {gap_trained:.1e})")
    run.print(f"test accuracy {acc_te:.3f} (train {acc_tr:.3f}, chance 0.100) after {cfg.steps} steps, {seconds:.1f}s")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.6, alpha=0.5, label="minibatch loss")
    k = max(1, len(losses) // 30)
    ax.plot(np.convolve(losses, np.ones(k) / k, mode="valid"), label=f"moving mean ({k})")
    ax.axhline(np.log(10), ls=":", c="gray", label="chance (log 10)")
    ax.set(xlabel="step", ylabel="cross-entropy", title=f"numpy-autograd MLP on digits: test acc {acc_te:.3f}")
    ax.legend()
    run.savefig(fig, "loss")

    held = max_gap <= cfg.grad_tol and acc_te >= cfg.min_accuracy
    return Verdict(held=held,
                   metrics={"max_grad_diff": max_gap, "grad_diff_init": gap_init, "grad_diff_trained": gap_trained,
                            "test_accuracy": acc_te, "train_accuracy": acc_tr, "final_loss": float(np.mean(losses[-20:])),
                            "train_seconds": seconds},
                   notes=f"grads vs torch.autograd on a batch of {cfg.batch} (float64); "
                         f"held needs diff ≤ {cfg.grad_tol} and test acc ≥ {cfg.min_accuracy}")
