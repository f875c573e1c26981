"""F8: REINFORCE with a baseline and DQN learn CartPole, our CartPole being Gymnasium's step for step.

The environment is deepatlas.foundations.cartpole (the classic equations, many environments in one numpy
step); first it is checked against Gymnasium's CartPole-v1 (same seeds and actions: equal observations,
rewards, terminations, truncations) when gymnasium is installed.

Agents (deepatlas.foundations.rl): REINFORCE with reward-to-go (γ = 0.99) and a learned value baseline,
16 episodes per update; DQN with a replay buffer, a target network (soft updates), Double-DQN targets,
ε-greedy exploration and the Huber loss. Each is evaluated every few updates on 100 fresh episodes (REINFORCE
sampling from its policy, DQN greedy); an agent "solves" CartPole when that mean return reaches the
threshold — 475, CartPole-v1's, in the full setting; 195, CartPole-v0's, in the quick one. Several seeds;
the CPU seconds and environment steps until solved are reported per seed (median and range).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.foundations import cartpole
from deepatlas.foundations.rl import DQNConfig, ReinforceConfig, dqn, reinforce


@dataclass
class Config:
    seeds: int = 3
    threshold: float = 475.0
    reinforce_iterations: int = 150        # × 16 episodes
    dqn_env_steps: int = 60_000
    dqn_eval_every: int = 1000
    gym_episodes: int = 5
    seed: int = 0


def gymnasium_parity(episodes: int, seed: int) -> tuple[float, int] | None:
    """max |obs ours − obs gymnasium| and the number of steps compared; None without gymnasium."""
    try:
        import gymnasium as gym
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    worst, steps = 0.0, 0
    for ep in range(episodes):
        ref = gym.make("CartPole-v1")
        ref_obs, _ = ref.reset(seed=seed + ep)
        ours = cartpole.CartPoleBatch(1, seed=seed + ep)
        obs = ours.reset()
        worst = max(worst, float(np.abs(obs[0] - ref_obs).max()))
        while True:   # a noisy balancing controller, so some episodes run to the 500-step limit
            a = int(obs[0, 2] + 0.5 * obs[0, 3] > 0) if rng.random() > 0.2 else int(rng.integers(2))
            ref_obs, ref_r, ref_term, ref_trunc, _ = ref.step(a)
            obs, r, term, trunc = ours.step(np.array([a]))
            steps += 1
            same_flags = (r[0], bool(term[0]), bool(trunc[0])) == (ref_r, ref_term, ref_trunc)
            worst = max(worst, float(np.abs(obs[0] - ref_obs).max()) if same_flags else float("inf"))
            if ref_term or ref_trunc or not same_flags:
                break
    return worst, steps


@experiment("F8", "cartpole-rl",
            claim="REINFORCE with a learned baseline and DQN (replay, target network, ε-greedy, Huber) each reach "
                  "CartPole-v1's solve threshold (mean return ≥ 475 over 100 episodes; quick: v0's 195) on every "
                  "seed within 150×16 episodes / 60k environment steps; our CartPole equals Gymnasium's step for step",
            config=Config, quick={"seeds": 1, "threshold": 195.0, "reinforce_iterations": 60, "dqn_env_steps": 15000,
                                  "gym_episodes": 2},
            one_thread=True,
            headline={"reinforce_solved": ("REINFORCE seeds solved", "{}"), "dqn_solved": ("DQN seeds solved", "{}"),
                      "reinforce_median_cpu_s": ("REINFORCE median CPU", "{:.1f} s"),
                      "dqn_median_cpu_s": ("DQN median CPU", "{:.1f} s")})
def cartpole_rl(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.time()
    parity = gymnasium_parity(cfg.gym_episodes, cfg.seed)
    if parity is None:
        run.print("gymnasium not installed (pip install gymnasium): the parity check is skipped")
    else:
        run.print(f"ours vs gymnasium CartPole-v1: max |Δobs| {parity[0]:.1e} over {parity[1]} steps")

    agents = {"reinforce": lambda s: reinforce(ReinforceConfig(max_iterations=cfg.reinforce_iterations,
                                                               solve_at=cfg.threshold), s),
              "dqn": lambda s: dqn(DQNConfig(max_env_steps=cfg.dqn_env_steps, eval_every=cfg.dqn_eval_every,
                                             solve_at=cfg.threshold), s)}
    results: dict[str, list] = {name: [] for name in agents}
    for name, train in agents.items():
        for seed in range(cfg.seed, cfg.seed + cfg.seeds):
            r = train(seed)
            results[name].append(r)
            run.log(agent=name, seed=seed, solved=r.solved, env_steps=r.env_steps_to_solve,
                    cpu_seconds=r.seconds_to_solve, final_eval=r.final_eval, curve=r.curve)
            run.print(f"{name:9s} seed {seed}: solved {r.solved} after {r.env_steps_to_solve} env steps, "
                      f"{r.seconds_to_solve and round(r.seconds_to_solve, 1)} CPU s; evals "
                      f"{[round(v) for v in r.curve['eval_return']]}")

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.3))
    for ax, (name, rs) in zip(axes, results.items()):
        for seed, r in enumerate(rs):
            ax.plot(r.curve["env_steps"], r.curve["eval_return"], marker=".", label=f"seed {cfg.seed + seed}")
        ax.axhline(cfg.threshold, c="k", ls=":", label=f"threshold {cfg.threshold:g}")
        ax.set(xlabel="environment steps", ylabel="mean return over 100 episodes", ylim=(0, 520),
               title={"reinforce": "REINFORCE + baseline (sampled policy)", "dqn": "Double DQN (greedy policy)"}[name])
        ax.legend(fontsize=8)
    run.savefig(fig, "learning_curves")

    metrics: dict = {}
    if parity is not None:
        metrics.update(gym_max_obs_diff=parity[0], gym_steps_compared=parity[1])
    for name, rs in results.items():
        solved = [r for r in rs if r.solved]
        cpu = [r.seconds_to_solve for r in solved]
        steps = [r.env_steps_to_solve for r in solved]
        metrics.update({f"{name}_solved": f"{len(solved)}/{len(rs)}",
                        f"{name}_all_solved": len(solved) == len(rs),
                        f"{name}_median_cpu_s": float(np.median(cpu)) if cpu else float("nan"),
                        f"{name}_cpu_s_range": [float(min(cpu)), float(max(cpu))] if cpu else None,
                        f"{name}_median_env_steps": float(np.median(steps)) if steps else float("nan"),
                        f"{name}_env_steps_range": [int(min(steps)), int(max(steps))] if steps else None,
                        f"{name}_final_eval": [r.final_eval for r in rs]})
    metrics.update(threshold=cfg.threshold, seconds=time.time() - start)
    parity_ok = parity is None or parity[0] <= 1e-6
    held = metrics["reinforce_all_solved"] and metrics["dqn_all_solved"] and parity_ok
    return Verdict(held=held, metrics=metrics,
                   notes=f"held: every seed of both agents reached a mean return ≥ {cfg.threshold:g} over 100 "
                         "evaluation episodes within its budget, and our CartPole matched Gymnasium's (≤ 1e-6) "
                         "where gymnasium is installed. CPU seconds are process time on one thread.")
