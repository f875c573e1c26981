"""Policy gradients and deep Q-learning, from their equations (map place F8), on deepatlas.foundations.cartpole.

REINFORCE (Williams 1992) with reward-to-go and a learned baseline (Sutton & Barto 2018, §13.4):
    ∇J(θ) = E[ Σ_t ∇ log π_θ(a_t | s_t) (G_t − b(s_t)) ],   G_t = Σ_{k≥t} γ^{k−t} r_k,
computed as the gradient of the surrogate  L(θ) = −mean_t log π_θ(a_t|s_t) · Â_t  with Â_t held fixed;
the baseline b = V_φ(s) is fitted to G_t by least squares. Subtracting b leaves the gradient unbiased
(E[∇ log π · b(s)] = 0) and lowers its variance (tests/foundations/test_rl.py checks both on a bandit
whose gradient is known in closed form).

DQN (Mnih et al. 2015, Alg. 1): ε-greedy acting, a replay buffer of transitions, a target network
Q_φ⁻ copied every C updates, and the Huber loss on the TD error
    δ = Q_φ(s, a) − (r + γ (1 − terminal) max_a' Q_φ⁻(s', a')),
where a time-limit truncation is not terminal (the state still has a future; Pardo et al. 2018). Options:
Double-DQN targets (van Hasselt et al. 2016) and soft target updates φ⁻ ← τφ + (1 − τ)φ⁻ (Lillicrap et
al. 2016) instead of copies every C updates; the defaults (both on) solve CartPole-v1 in ~10k steps.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from deepatlas.foundations.cartpole import SOLVED, CartPoleBatch, evaluate_policy
from deepatlas.foundations.mlp import MLP


def reward_to_go(rewards: Tensor, gamma: float) -> Tensor:
    """G_t = r_t + γ G_{t+1} along dim 0. rewards (T, N), zeros after an episode ended -> (T, N)."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma={gamma} must be in [0, 1]")
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running                          # G_t = r_t + γ G_{t+1}
        out[t] = running
    return out


def policy_gradient_loss(log_probs: Tensor, advantages: Tensor, mask: Tensor | None = None) -> Tensor:
    """Surrogate −mean log π(a|s) · Â (Â detached) over the valid steps; its gradient is REINFORCE's."""
    surrogate = log_probs * advantages.detach()
    if mask is None:
        return -surrogate.mean()
    return -(surrogate * mask).sum() / mask.sum().clamp(min=1)


def huber(x: Tensor, delta: float = 1.0) -> Tensor:
    """Huber (1964): ½x² for |x| ≤ δ, δ(|x| − ½δ) beyond — quadratic near 0, linear in the tails."""
    a = x.abs()
    return torch.where(a <= delta, 0.5 * x * x, delta * (a - 0.5 * delta))


@dataclass
class AgentResult:
    solved: bool = False
    env_steps_to_solve: int | None = None
    seconds_to_solve: float | None = None
    final_eval: float = 0.0                           # mean return over 100 episodes of the last/solving policy
    curve: dict[str, list[float]] = field(default_factory=lambda: {"env_steps": [], "eval_return": []})


def _evaluate(act, result: AgentResult, env_steps: int, start: float, episodes: int, seed: int,
              solve_at: float) -> bool:
    score = float(evaluate_policy(act, episodes, seed=seed).mean())
    result.curve["env_steps"].append(env_steps)
    result.curve["eval_return"].append(score)
    result.final_eval = score
    if score >= solve_at and not result.solved:
        result.solved, result.env_steps_to_solve = True, env_steps
        result.seconds_to_solve = time.process_time() - start
    return result.solved


@dataclass
class ReinforceConfig:
    episodes_per_batch: int = 16
    max_iterations: int = 150
    hidden: int = 64
    lr: float = 1e-2
    value_lr: float = 1e-2
    gamma: float = 0.99
    baseline: bool = True
    eval_every: int = 5
    eval_episodes: int = 100
    solve_at: float = SOLVED         # stop when the evaluation's mean return reaches this


def reinforce(cfg: ReinforceConfig, seed: int) -> AgentResult:
    """Train a softmax policy on CartPole until its sampled episodes average ≥ 475 over 100 (or budget)."""
    torch.manual_seed(seed)
    policy = MLP([4, cfg.hidden, 2], activation="tanh")
    value = MLP([4, cfg.hidden, 1], activation="tanh")
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    opt_v = torch.optim.Adam(value.parameters(), lr=cfg.value_lr)
    gen = torch.Generator().manual_seed(seed)
    result, start, env_steps = AgentResult(), time.process_time(), 0

    def act(obs: np.ndarray) -> np.ndarray:                          # sample a ~ π(·|s)
        with torch.no_grad():
            probs = torch.softmax(policy(torch.from_numpy(obs)), -1)
        return torch.multinomial(probs, 1, generator=gen).squeeze(1).numpy()

    for it in range(cfg.max_iterations):
        env = CartPoleBatch(cfg.episodes_per_batch, seed=seed * 100_000 + it * cfg.episodes_per_batch)
        obs = env.reset()
        states, actions, rewards, live = [], [], [], []
        while not env.done.all():
            alive = ~env.done
            a = act(obs)
            states.append(obs); actions.append(a); live.append(alive)
            obs, r, _, _ = env.step(a)
            rewards.append(r)
        s = torch.from_numpy(np.stack(states))                           # (T, E, 4)
        a = torch.from_numpy(np.stack(actions))                          # (T, E)
        mask = torch.from_numpy(np.stack(live)).float()                  # (T, E) 1 while the episode runs
        g = reward_to_go(torch.from_numpy(np.stack(rewards)).float(), cfg.gamma)   # G_t, (T, E)
        env_steps += int(mask.sum())
        log_pi = torch.log_softmax(policy(s), -1).gather(-1, a.unsqueeze(-1)).squeeze(-1)  # (T, E)
        scale = 1.0 / (1.0 - cfg.gamma)                                   # G ≤ 1/(1−γ): the value net sees G/scale
        if cfg.baseline:
            v = value(s).squeeze(-1) * scale                              # b(s_t) = V_φ(s_t)
            adv = g - v.detach()
            loss_v = (((v - g) / scale).pow(2) * mask).sum() / mask.sum()
            opt_v.zero_grad(); loss_v.backward(); opt_v.step()
        else:
            adv = g
        adv = adv / scale
        loss = policy_gradient_loss(log_pi, adv, mask)
        opt.zero_grad(); loss.backward(); opt.step()
        if (it + 1) % cfg.eval_every == 0 and _evaluate(act, result, env_steps, start, cfg.eval_episodes,
                                                        10_000 + 1000 * seed, cfg.solve_at):
            break
    return result


class ReplayBuffer:
    """A circular buffer of (s, a, r, s', terminal) transitions, sampled uniformly (Lin 1992)."""

    def __init__(self, capacity: int, obs_dim: int) -> None:
        if capacity < 1:
            raise ValueError(f"ReplayBuffer capacity={capacity} must be ≥ 1")
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminal = np.zeros(capacity, np.float32)
        self.capacity, self.size, self.pos = capacity, 0, 0

    def add(self, obs, actions, rewards, next_obs, terminal) -> None:
        for i in range(len(actions)):
            j = self.pos
            self.obs[j], self.actions[j], self.rewards[j] = obs[i], actions[i], rewards[i]
            self.next_obs[j], self.terminal[j] = next_obs[i], terminal[i]
            self.pos = (self.pos + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[Tensor, ...]:
        idx = rng.integers(0, self.size, batch)
        return tuple(torch.from_numpy(x[idx]) for x in
                     (self.obs, self.actions, self.rewards, self.next_obs, self.terminal))


def dqn_loss(q: nn.Module, q_target: nn.Module, batch: tuple[Tensor, ...], gamma: float,
             double: bool = False) -> Tensor:
    obs, actions, rewards, next_obs, terminal = batch
    q_sa = q(obs).gather(1, actions.unsqueeze(1)).squeeze(1)                  # Q_φ(s, a), (B,)
    with torch.no_grad():
        q_next = q_target(next_obs)                                          # (B, A)
        if double:   # van Hasselt et al. 2016: the online net picks a', the target net values it
            best = q_next.gather(1, q(next_obs).argmax(1, keepdim=True)).squeeze(1)
        else:        # y = r + γ (1 − terminal) max_a' Q_φ⁻(s', a')
            best = q_next.max(1).values
        target = rewards + gamma * (1 - terminal) * best
    return huber(q_sa - target).mean()


@dataclass
class DQNConfig:
    envs: int = 2
    max_env_steps: int = 60_000
    hidden: int = 128
    lr: float = 1e-3
    gamma: float = 0.99
    buffer: int = 20_000
    batch: int = 64
    learning_starts: int = 1000
    target_every: int = 250          # updates between target-network copies (C); used when tau = 0
    tau: float = 0.01                # > 0: soft target update φ⁻ ← τφ + (1 − τ)φ⁻ after every update
    double: bool = True              # Double DQN targets (van Hasselt et al. 2016)
    eps_start: float = 1.0
    eps_end: float = 0.02
    eps_decay_steps: int = 10_000    # env steps of the linear ε schedule
    updates_per_step: int = 1        # gradient updates per vector step (of `envs` transitions)
    eval_every: int = 1000           # env steps
    eval_episodes: int = 100
    solve_at: float = SOLVED


def dqn(cfg: DQNConfig, seed: int) -> AgentResult:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    q = MLP([4, cfg.hidden, cfg.hidden, 2], activation="relu")
    q_target = copy.deepcopy(q)
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    buf = ReplayBuffer(cfg.buffer, 4)
    env = CartPoleBatch(cfg.envs, seed=seed * 100_000, auto_reset=True)
    obs = env.reset()
    result, start, updates, env_steps, next_eval = AgentResult(), time.process_time(), 0, 0, cfg.eval_every

    def greedy(o: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return q(torch.from_numpy(o)).argmax(1).numpy()

    while env_steps < cfg.max_env_steps:
        # ε-greedy with ε decaying linearly from eps_start to eps_end
        eps = max(cfg.eps_end, cfg.eps_start - (cfg.eps_start - cfg.eps_end) * env_steps / cfg.eps_decay_steps)
        a = greedy(obs)
        explore = rng.random(cfg.envs) < eps
        a = np.where(explore, rng.integers(0, 2, cfg.envs), a)
        nxt, r, term, _ = env.step(a)
        buf.add(obs, a, r, env.final_obs, term)          # s' is the final obs when an episode ended
        obs, env_steps = nxt, env_steps + cfg.envs
        if buf.size >= cfg.learning_starts:
            for _ in range(cfg.updates_per_step):
                loss = dqn_loss(q, q_target, buf.sample(cfg.batch, rng), cfg.gamma, cfg.double)
                opt.zero_grad(); loss.backward()
                nn.utils.clip_grad_norm_(q.parameters(), 10.0)
                opt.step()
                updates += 1
                if cfg.tau > 0:
                    with torch.no_grad():
                        for pt, p in zip(q_target.parameters(), q.parameters()):
                            pt.lerp_(p, cfg.tau)                           # φ⁻ ← τφ + (1 − τ)φ⁻
                elif updates % cfg.target_every == 0:
                    q_target.load_state_dict(q.state_dict())           # φ⁻ ← φ
        if env_steps >= next_eval:
            next_eval += cfg.eval_every
            if _evaluate(greedy, result, env_steps, start, cfg.eval_episodes, 10_000 + 1000 * seed, cfg.solve_at):
                break
    return result
