"""F6: FedAvg's server step is the n_k/n-weighted mean; clients send only state dicts; claim holds."""
import pytest
import torch
from torch import nn

from deepatlas.data.fashion_mnist import fashion_mnist_dir
from deepatlas.foundations.federated import Client, fedavg, fedavg_aggregate, label_skew_split


def test_aggregate_is_the_weighted_mean_in_closed_form():
    a = {"w": torch.tensor([[1.0, 2.0]]), "b": torch.tensor([3.0]), "steps": torch.tensor(7)}
    b = {"w": torch.tensor([[5.0, -2.0]]), "b": torch.tensor([0.0]), "steps": torch.tensor(9)}
    c = {"w": torch.tensor([[0.0, 0.0]]), "b": torch.tensor([6.0]), "steps": torch.tensor(1)}
    out = fedavg_aggregate([a, b, c], [1, 3, 4])      # n = 8: weights 1/8, 3/8, 4/8
    torch.testing.assert_close(out["w"], torch.tensor([[(1 + 15 + 0) / 8, (2 - 6 + 0) / 8]]))
    torch.testing.assert_close(out["b"], torch.tensor([(3 + 0 + 24) / 8]))
    assert out["steps"].item() == 7                    # integer buffer: first client's
    torch.manual_seed(0)
    states = [{"p": torch.randn(4, 3)} for _ in range(5)]
    counts = [10, 1, 7, 7, 30]
    expected = sum(n * s["p"] for s, n in zip(states, counts)) / sum(counts)
    torch.testing.assert_close(fedavg_aggregate(states, counts)["p"], expected)
    one = fedavg_aggregate([states[0]], [5])           # one client: its own weights
    torch.testing.assert_close(one["p"], states[0]["p"])
    with pytest.raises(ValueError, match="positive"):
        fedavg_aggregate(states[:2], [1, 0])
    with pytest.raises(ValueError, match="keys"):
        fedavg_aggregate([{"p": torch.ones(1)}, {"q": torch.ones(1)}], [1, 1])


def test_label_skew_gives_each_client_two_classes_and_covers_the_data():
    labels = torch.arange(1000) % 10
    parts = label_skew_split(labels, 10, 2, seed=0)
    assert [sorted(set(labels[p].tolist())) for p in parts] == \
        [sorted({k, (k + 1) % 10}) for k in range(10)]
    assert torch.equal(torch.cat(parts).sort().values, torch.arange(1000))  # disjoint, complete


class Spy(Client):
    """Records every message a client sends to the server."""
    sent: list = []

    def update(self, *args, **kwargs):
        reply = super().update(*args, **kwargs)
        Spy.sent.append(reply)
        return reply


def test_fedavg_exchanges_only_state_dicts_and_learns():
    torch.manual_seed(0)
    x = torch.randn(400, 6)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()          # 4 classes
    make = lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))  # noqa: E731
    clients = [Spy(k, x[p], y[p], make) for k, p in enumerate(label_skew_split(y, 4, 2))]
    model = make()
    keys = set(model.state_dict())
    acc = lambda m: (m(x).argmax(-1) == y).float().mean().item()  # noqa: E731
    Spy.sent = []
    history = fedavg(model, clients, rounds=15, fraction=0.5, epochs=1, batch_size=20, lr=0.2,
                     evaluate=acc)
    assert len(Spy.sent) == 15 * 2 and all(len(c) == 2 for c in history.clients_per_round)
    data_ptrs = {x.data_ptr(), y.data_ptr()}
    for state, n in Spy.sent:
        assert set(state) == keys and isinstance(n, int)   # weights and a count, nothing else
        assert all(v.data_ptr() not in data_ptrs for v in state.values())
    assert not any(hasattr(c, "x") or hasattr(c, "y") for c in clients)
    assert history.accuracy[-1] > 0.8, history.accuracy


def test_f6_quick_holds(run_quick):
    try:
        fashion_mnist_dir()
    except FileNotFoundError as err:
        pytest.skip(f"Fashion-MNIST unavailable: {err}")
    s = run_quick("fedavg")
    assert s["held"], s["metrics"]
    assert s["metrics"]["fedavg_examples"] == s["metrics"]["central_examples"]


class ConstantStepClient:
    """A stand-in client whose update is one fixed step, w − η g_k: the server arithmetic in closed form."""

    def __init__(self, g: torch.Tensor, n: int) -> None:
        self.g, self.n, self.etas = g, n, []

    def update(self, state, epochs, batch_size, lr, seed, round_):
        self.etas.append(lr)
        return {"weight": state["weight"] - lr * self.g, "bias": state["bias"]}, self.n


def test_lr_decay_and_server_momentum_follow_their_recursions():
    g1, g2 = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 4.0]])
    gbar = (1 * g1 + 3 * g2) / 4                                  # n-weighted mean step direction
    rounds, eta, gamma, beta = 4, 0.1, 0.5, 0.9
    for momentum in (0.0, beta):
        model = nn.Linear(2, 1)
        w0 = model.weight.detach().clone()
        clients = [ConstantStepClient(g1, 1), ConstantStepClient(g2, 3)]
        fedavg(model, clients, rounds, 1.0, 1, 10, eta, lambda m: 0.0, lr_decay=gamma,
               server_momentum=momentum)
        etas = [eta * gamma ** t for t in range(rounds)]
        assert clients[0].etas == pytest.approx(etas)             # η_t = η γ^t
        v, w = torch.zeros_like(w0), w0.clone()                   # v ← βv + Δ_t; w ← w − v
        for t in range(rounds):
            v = momentum * v + etas[t] * gbar
            w = w - v
        torch.testing.assert_close(model.weight.detach(), w)
    plain = w0 - sum(etas) * gbar                                 # β = 0: FedAvg
    assert not torch.allclose(model.weight.detach(), plain)
    with pytest.raises(ValueError, match="server_momentum"):
        fedavg(nn.Linear(2, 1), clients, 1, 1.0, 1, 10, eta, lambda m: 0.0, server_momentum=1.0)
    with pytest.raises(ValueError, match="lr_decay"):
        fedavg(nn.Linear(2, 1), clients, 1, 1.0, 1, 10, eta, lambda m: 0.0, lr_decay=0.0)
