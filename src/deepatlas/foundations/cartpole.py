"""CartPole written from the classic equations, for many environments at once (map place F8).

Barto, Sutton & Anderson 1983 (with the corrected dynamics of Florian 2007, eqs. 23–24, as in
Gymnasium's CartPole-v1): a pole of half-length l and mass m_p on a cart of mass m_c, push F = ±10 N,
    temp = (F + m_p l θ̇² sin θ) / (m_c + m_p)
    θ̈    = (g sin θ − cos θ · temp) / (l (4/3 − m_p cos²θ / (m_c + m_p)))
    ẍ    = temp − m_p l θ̈ cos θ / (m_c + m_p)
integrated by explicit Euler with τ = 0.02 s. Reward 1 per step (the falling step included); the
episode terminates when |x| > 2.4 or |θ| > 12° and is truncated at 500 steps (v1). The start state
is uniform in [−0.05, 0.05]⁴ from numpy's default_rng — the same draws as gymnasium's reset(seed=s),
so episodes equal Gymnasium's step for step (tests/foundations/test_cartpole.py).

A batch of N environments steps as one vectorised numpy computation; `auto_reset` starts a finished
environment again (for DQN's continuous stream of transitions).
"""
from __future__ import annotations

import math

import numpy as np

GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = MASS_CART + MASS_POLE
POLEMASS_LENGTH = MASS_POLE * HALF_LENGTH
X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * math.pi / 360
MAX_STEPS = 500            # CartPole-v1's TimeLimit
SOLVED = 475.0             # v1's reward threshold: mean return over 100 consecutive episodes


def cartpole_dynamics(state: np.ndarray, action: np.ndarray) -> np.ndarray:
    """One Euler step: state (N, 4) = (x, ẋ, θ, θ̇), action (N,) in {0, 1} -> next state (N, 4)."""
    x, x_dot, theta, theta_dot = state.T
    force = np.where(action == 1, FORCE, -FORCE)
    cos, sin = np.cos(theta), np.sin(theta)
    # temp = (F + m_p l θ̇² sin θ) / (m_c + m_p)
    temp = (force + POLEMASS_LENGTH * np.square(theta_dot) * sin) / TOTAL_MASS
    # θ̈ = (g sin θ − cos θ temp) / (l (4/3 − m_p cos²θ / (m_c + m_p)))
    theta_acc = (GRAVITY * sin - cos * temp) / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * np.square(cos) / TOTAL_MASS))
    # ẍ = temp − m_p l θ̈ cos θ / (m_c + m_p)
    x_acc = temp - POLEMASS_LENGTH * theta_acc * cos / TOTAL_MASS
    return np.stack([x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot, theta_dot + TAU * theta_acc], 1)


class CartPoleBatch:
    """N CartPole-v1 environments. obs = reset(); obs, reward, terminated, truncated = step(actions).

    Observations are float32 like Gymnasium's; the state is kept in float64. Without auto_reset a
    finished environment must not be stepped again (`done` says which are finished)."""

    def __init__(self, n: int, seed: int = 0, auto_reset: bool = False) -> None:
        if n < 1:
            raise ValueError(f"CartPoleBatch needs n ≥ 1 environments, got {n}")
        self.n, self.auto_reset = n, auto_reset
        self.rngs = [np.random.default_rng(seed + i) for i in range(n)]   # env i: gymnasium reset(seed=seed+i)
        self.state = np.zeros((n, 4))
        self.steps = np.zeros(n, dtype=np.int64)
        self.done = np.zeros(n, dtype=bool)

    def _reset(self, idx: np.ndarray) -> None:
        for i in idx:
            self.state[i] = self.rngs[i].uniform(-0.05, 0.05, size=4)
        self.steps[idx] = 0
        self.done[idx] = False

    def reset(self) -> np.ndarray:
        self._reset(np.arange(self.n))
        return self.state.astype(np.float32)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """-> obs (N, 4) float32, reward (N,), terminated (N,), truncated (N,).

        Without auto_reset a finished environment stays where it ended and earns 0 (so a batch of
        episodes can run until all are done). With auto_reset the obs of a finished environment is its
        next episode's first observation; the final one is in `self.final_obs`."""
        actions = np.asarray(actions)
        if actions.shape != (self.n,) or not np.isin(actions, (0, 1)).all():
            raise ValueError(f"actions must be (N={self.n},) of 0/1, got shape {actions.shape}")
        live = ~self.done
        self.state = np.where(live[:, None], cartpole_dynamics(self.state, actions), self.state)
        self.steps += live
        x, theta = self.state[:, 0], self.state[:, 2]
        terminated = live & ((np.abs(x) > X_LIMIT) | (np.abs(theta) > THETA_LIMIT))
        truncated = live & ~terminated & (self.steps >= MAX_STEPS)
        reward = live.astype(np.float64)                                  # +1 per step, the last one included
        self.done = self.done | terminated | truncated
        self.final_obs = self.state.astype(np.float32)
        if self.auto_reset and self.done.any():
            self._reset(np.nonzero(self.done)[0])
        return self.state.astype(np.float32), reward, terminated, truncated


def evaluate_policy(act, episodes: int = 100, seed: int = 10_000) -> np.ndarray:
    """Returns (episodes,) of the policy act(obs (N, 4) float32) -> actions (N,), all episodes in parallel."""
    env = CartPoleBatch(episodes, seed=seed)
    obs = env.reset()
    returns = np.zeros(episodes)
    while not env.done.all():
        obs, reward, _, _ = env.step(act(obs))
        returns += reward
    return returns
