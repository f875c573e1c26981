"""REINFORCE's estimator against the exact gradient of a bandit; DQN's pieces against torch / by hand."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepatlas.foundations.rl import ReplayBuffer, dqn_loss, huber, policy_gradient_loss, reward_to_go


def test_reward_to_go_by_hand():
    r = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]])         # second episode ended after one step
    g = reward_to_go(r, 0.5)
    torch.testing.assert_close(g, torch.tensor([[1.75, 1.0], [1.5, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="gamma"):
        reward_to_go(r, 1.5)


def test_policy_gradient_estimator_on_a_bandit():
    """3-armed bandit, softmax policy π = softmax(θ), rewards r: J = Σ π_a r_a, ∂J/∂θ_a = π_a (r_a − J).
    The surrogate's autograd gradient, averaged over sampled actions, must match it, with and without a
    baseline; the baseline must lower the variance."""
    theta = torch.tensor([0.2, -0.3, 0.5], dtype=torch.float64, requires_grad=True)
    r = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    pi = torch.softmax(theta, 0).detach()
    exact = pi * (r - (pi * r).sum())
    g = torch.Generator().manual_seed(0)
    n = 40000
    actions = torch.multinomial(pi, n, replacement=True, generator=g)
    log_pi = torch.log_softmax(theta, 0)[actions]                    # (n,)
    estimates = {}
    for name, b in (("plain", 0.0), ("baseline", float((pi * r).sum()))):
        # per-sample gradients of −log π(a)·(r_a − b): the score function (onehot(a) − π)·(r_a − b)
        per_sample = (F.one_hot(actions, 3) - pi) * (r[actions] - b)[:, None]
        loss = policy_gradient_loss(log_pi, r[actions] - b)
        (grad,) = torch.autograd.grad(-loss, theta, retain_graph=True)
        torch.testing.assert_close(grad, per_sample.mean(0))        # autograd = the explicit estimator
        se = per_sample.std(0) / n ** 0.5
        assert ((grad - exact).abs() < 4 * se).all(), (name, grad, exact, se)
        estimates[name] = per_sample.var(0).sum()
    assert estimates["baseline"] < 0.5 * estimates["plain"]


def test_policy_gradient_loss_mask():
    lp, adv = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 1.0])
    assert policy_gradient_loss(lp, adv, torch.tensor([1.0, 1.0, 0.0])).item() == pytest.approx(-1.5)


def test_huber_equals_torch():
    x = torch.linspace(-3, 3, 61)
    torch.testing.assert_close(huber(x), F.huber_loss(x, torch.zeros_like(x), reduction="none", delta=1.0))
    torch.testing.assert_close(huber(x, 2.0), F.huber_loss(x, torch.zeros_like(x), reduction="none", delta=2.0))


def test_dqn_loss_by_hand():
    torch.manual_seed(0)
    q = torch.nn.Linear(4, 2)
    qt = copy.deepcopy(q)
    with torch.no_grad():
        qt.weight.add_(0.3)
    obs, nxt = torch.randn(5, 4), torch.randn(5, 4)
    a, r, term = torch.tensor([0, 1, 1, 0, 1]), torch.ones(5), torch.tensor([0.0, 0, 1, 0, 0])
    y = r + 0.9 * (1 - term) * qt(nxt).max(1).values
    expect = F.smooth_l1_loss(q(obs)[torch.arange(5), a], y.detach())
    torch.testing.assert_close(dqn_loss(q, qt, (obs, a, r, nxt, term), 0.9), expect)
    y2 = r + 0.9 * (1 - term) * qt(nxt)[torch.arange(5), q(nxt).argmax(1)]
    torch.testing.assert_close(dqn_loss(q, qt, (obs, a, r, nxt, term), 0.9, double=True),
                               F.smooth_l1_loss(q(obs)[torch.arange(5), a], y2.detach()))


def test_replay_buffer_wraps_around():
    buf = ReplayBuffer(3, 1)
    for i in range(5):
        buf.add(np.array([[i]]), np.array([i % 2]), np.array([i]), np.array([[i + 1]]), np.array([0]))
    assert buf.size == 3 and sorted(buf.rewards.tolist()) == [2.0, 3.0, 4.0]
    obs, act, rew, nxt, term = buf.sample(8, np.random.default_rng(0))
    assert (nxt[:, 0] == obs[:, 0] + 1).all() and obs.shape == (8, 1)
