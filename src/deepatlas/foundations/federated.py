"""Federated averaging — FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep
Networks from Decentralized Data", Algorithm 1) — map place F6.

K clients each hold n_k private examples (n = Σ n_k). Each round t the server sends its weights
w_t to a random subset S_t of m = max(C·K, 1) clients; client k runs E epochs of minibatch SGD
(batch B, step η) from w_t on its own data only and sends back w^k_{t+1}; the server averages

    w_{t+1} = Σ_{k∈S_t} (n_k / n_S) w^k_{t+1},       n_S = Σ_{k∈S_t} n_k

Only state dicts (and the count n_k) cross the client boundary; the examples never do: a Client
keeps its tensors in private attributes and its only message is `update(global_state)`.

Two options from practice, both off by default (then the loop is exactly Algorithm 1):
  - a client step size that decays across rounds, η_t = η · γ^t (FedAvg on non-IID data needs a
    decaying η to converge, Li et al. 2020, "On the Convergence of FedAvg on Non-IID Data");
  - server momentum, FedAvgM (Hsu et al. 2019): with the averaged update Δ_t = w_t − w̄_{t+1},
        v_{t+1} = β v_t + Δ_t,      w_{t+1} = w_t − v_{t+1}        (β = 0 gives FedAvg).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

StateDict = dict[str, Tensor]


def fedavg_aggregate(states: list[StateDict], counts: list[int]) -> StateDict:
    """Σ_k (n_k / Σ n_j) · state_k for every floating-point entry (Algorithm 1, server step).

    Non-float entries (integer counters such as BatchNorm's num_batches_tracked) are not
    averageable; they are taken from the first client."""
    if not states or len(states) != len(counts):
        raise ValueError(f"need one count per state dict, got {len(states)} states, {len(counts)} counts")
    if any(n <= 0 for n in counts):
        raise ValueError(f"client example counts must be positive, got {counts}")
    keys = list(states[0])
    for k, state in enumerate(states[1:], start=1):
        if list(state) != keys:
            raise ValueError(f"client {k} sent keys {sorted(set(state) ^ set(keys))} that differ "
                             f"from client 0's")
    total = float(sum(counts))
    out: StateDict = {}
    for key in keys:
        if not states[0][key].is_floating_point():
            out[key] = states[0][key].clone()
            continue
        # w_{t+1} = Σ_k (n_k / n) w^k_{t+1}
        out[key] = sum((n / total) * state[key] for state, n in zip(states, counts))
    return out


def _generator(*key: object) -> torch.Generator:
    digest = hashlib.blake2b("/".join(map(str, key)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "big") >> 1)


def sgd_epochs(model: nn.Module, x: Tensor, y: Tensor, epochs: int, batch_size: int, lr: float,
               gen: torch.Generator) -> int:
    """E epochs of plain minibatch SGD, w ← w − η ∇ℓ(w; b) (Algorithm 1, ClientUpdate).

    Returns the number of examples processed (the compute spent)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return epochs * len(x)


class Client:
    """One device: private data and a local model; it only ever sends back a state dict."""

    def __init__(self, cid: int, x: Tensor, y: Tensor, make_model: Callable[[], nn.Module]) -> None:
        self.cid = cid
        self.__x, self.__y = x, y  # name-mangled: the server code has no business reading them
        self.n = len(x)
        self.model = make_model()

    def update(self, global_state: StateDict, epochs: int, batch_size: int, lr: float,
               seed: int, round_: int) -> tuple[StateDict, int]:
        """ClientUpdate(k, w): load w, run E local epochs, return (w^k, n_k)."""
        self.model.load_state_dict(global_state)
        sgd_epochs(self.model, self.__x, self.__y, epochs, batch_size, lr,
                   _generator(seed, round_, self.cid))
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}, self.n

    def labels_held(self) -> list[int]:
        """The classes this client has (a statistic for the experiment's printout, not data)."""
        return sorted(set(self.__y.tolist()))


def label_skew_split(labels: Tensor, n_clients: int, classes_per_client: int = 2,
                     seed: int = 0) -> list[Tensor]:
    """Label-skewed (non-IID) partition in the spirit of McMahan et al.'s "pathological non-IID"
    split: client k holds only the classes (k + j) mod n_classes, j < classes_per_client, and each
    class's examples are dealt evenly, at random, to the clients holding it. Returns each
    client's example indices."""
    n_classes = int(labels.max()) + 1
    if not 1 <= classes_per_client <= n_classes:
        raise ValueError(f"classes_per_client {classes_per_client}; valid: 1..{n_classes}")
    holders: dict[int, list[int]] = {c: [] for c in range(n_classes)}
    for k in range(n_clients):
        for j in range(classes_per_client):
            holders[(k + j) % n_classes].append(k)
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[Tensor]] = [[] for _ in range(n_clients)]
    for c, owners in holders.items():
        if not owners:
            continue  # with fewer clients than classes some classes belong to nobody
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        for owner, chunk in zip(owners, idx.tensor_split(len(owners))):
            parts[owner].append(chunk)
    return [torch.cat(p).sort().values for p in parts]


@dataclass
class FedAvgHistory:
    accuracy: list[float] = field(default_factory=list)  # after each round
    examples: list[int] = field(default_factory=list)    # cumulative examples processed by clients
    clients_per_round: list[list[int]] = field(default_factory=list)


def round_lr(lr: float, lr_decay: float, t: int) -> float:
    """η_t = η · γ^t, the client step size in round t (0-based)."""
    return lr * lr_decay ** t


def fedavg(model: nn.Module, clients: list[Client], rounds: int, fraction: float, epochs: int,
           batch_size: int, lr: float, evaluate: Callable[[nn.Module], float], seed: int = 0,
           on_round: Callable[[int, float], None] | None = None, lr_decay: float = 1.0,
           server_momentum: float = 0.0) -> FedAvgHistory:
    """Algorithm 1 (server): train `model` in place over `rounds` rounds; evaluate after each.

    lr_decay γ: clients use η_t = η·γ^t in round t. server_momentum β > 0: FedAvgM (module doc)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"client fraction C={fraction}; valid: 0 < C ≤ 1")
    if not 0.0 < lr_decay <= 1.0:
        raise ValueError(f"lr_decay γ={lr_decay}; valid: 0 < γ ≤ 1")
    if not 0.0 <= server_momentum < 1.0:
        raise ValueError(f"server_momentum β={server_momentum}; valid: 0 ≤ β < 1")
    history, seen = FedAvgHistory(), 0
    m = max(int(round(fraction * len(clients))), 1)          # m = max(C·K, 1)
    velocity: StateDict = {}
    for t in range(rounds):
        chosen = torch.randperm(len(clients), generator=_generator(seed, "select", t))[:m].tolist()
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        eta = round_lr(lr, lr_decay, t)
        replies = [clients[k].update(state, epochs, batch_size, eta, seed, t) for k in chosen]
        averaged = fedavg_aggregate([s for s, _ in replies], [n for _, n in replies])
        if server_momentum > 0.0:
            for k, w in state.items():
                if not w.is_floating_point():
                    continue
                delta = w - averaged[k]                                    # Δ_t = w_t − w̄_{t+1}
                velocity[k] = server_momentum * velocity[k] + delta if k in velocity else delta
                averaged[k] = w - velocity[k]                              # w_{t+1} = w_t − v_{t+1}
        model.load_state_dict(averaged)
        seen += epochs * sum(n for _, n in replies)
        history.accuracy.append(evaluate(model))
        history.examples.append(seen)
        history.clients_per_round.append(sorted(chosen))
        if on_round is not None:
            on_round(t, history.accuracy[-1])
    return history
