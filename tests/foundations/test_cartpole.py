"""Our CartPole equals Gymnasium's CartPole-v1 step for step (same seeds, same actions)."""
import numpy as np
import pytest

from deepatlas.foundations.cartpole import MAX_STEPS, CartPoleBatch, cartpole_dynamics, evaluate_policy


def test_equals_gymnasium_cartpole_v1():
    gym = pytest.importorskip("gymnasium", reason="gymnasium not installed: pip install gymnasium")
    rng = np.random.default_rng(0)
    for seed in range(5):
        ref = gym.make("CartPole-v1")
        ref_obs, _ = ref.reset(seed=seed)
        ours = CartPoleBatch(1, seed=seed)
        obs = ours.reset()
        np.testing.assert_array_equal(obs[0], ref_obs)
        # a policy that balances for a while (so the 500-step truncation is reached for some seeds)
        while True:
            a = int(obs[0, 2] + 0.5 * obs[0, 3] > 0) if rng.random() > 0.1 else int(rng.integers(2))
            ref_obs, ref_r, ref_term, ref_trunc, _ = ref.step(a)
            obs, r, term, trunc = ours.step(np.array([a]))
            np.testing.assert_allclose(obs[0], ref_obs, rtol=0, atol=1e-6)
            assert (r[0], bool(term[0]), bool(trunc[0])) == (ref_r, ref_term, ref_trunc)
            if ref_term or ref_trunc:
                break


def test_hand_computed_step_and_batch():
    # θ = 0, θ̇ = 0, push right: temp = 10/1.1, θ̈ = −temp/(0.5 (4/3 − 0.1/1.1)), ẍ = temp − 0.05 θ̈/1.1
    temp = 10 / 1.1
    th_acc = -temp / (0.5 * (4 / 3 - 0.1 / 1.1))
    x_acc = temp - 0.05 * th_acc / 1.1
    nxt = cartpole_dynamics(np.array([[0.0, 1.0, 0.0, 0.0]]), np.array([1]))
    np.testing.assert_allclose(nxt[0], [0.02, 1 + 0.02 * x_acc, 0.0, 0.02 * th_acc])
    # a batch steps each environment independently; a finished one stays and earns 0
    env = CartPoleBatch(3, seed=0)
    env.reset()
    returns = np.zeros(3)
    while not env.done.all():
        _, r, _, _ = env.step(np.array([0, 1, 0]))
        returns += r
    assert (returns < 20).all() and (env.steps == returns).all()
    with pytest.raises(ValueError, match="actions"):
        env.step(np.array([0, 2, 1]))


def test_evaluate_policy_and_auto_reset():
    balance = lambda obs: (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)   # a known good controller
    assert evaluate_policy(balance, episodes=10).min() == MAX_STEPS
    assert evaluate_policy(lambda obs: np.zeros(len(obs), dtype=np.int64), episodes=10).max() < 20
    env = CartPoleBatch(2, seed=3, auto_reset=True)
    env.reset()
    for _ in range(40):
        obs, _, term, _ = env.step(np.zeros(2, dtype=np.int64))
        if term.any():
            assert (np.abs(obs[term]) <= 0.05).all()          # a fresh start state
