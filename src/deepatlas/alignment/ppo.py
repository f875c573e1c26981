"""PPO for language models (map place T4): RLHF as InstructGPT step 3 / trl's PPOTrainer.

A rollout samples a response y ~ π_θ(·|x) token by token; token t is an action, the state is
the text so far. Per-token reward (Ziegler et al. 2019; Ouyang et al. 2022 eq. 2):

    r_t = − β · k_t  (+ r_φ(x, y) on the last response token),   k_t = log π_θ(y_t|·) − log π_ref(y_t|·)

KL estimators of KL(π_θ ‖ π_ref) from samples y ~ π_θ (Schulman 2020, "Approximating KL"):
    k1 = log π_θ − log π_ref                (unbiased, can be negative)
    k3 = (ρ − 1) − log ρ,  ρ = π_ref / π_θ   (unbiased, always ≥ 0, lower variance)

Generalised advantage estimation (Schulman et al. 2016), with V(after the last token) = 0:
    δ_t = r_t + γ V_{t+1} − V_t,     Â_t = Σ_l (γλ)^l δ_{t+l}  (computed backwards: Â_t = δ_t + γλ Â_{t+1})
    R_t = Â_t + V_t  (the value target);  Â whitened over the batch's response tokens.

Clipped surrogate (Schulman et al. 2017, eq. 7) and clipped value loss, several epochs per batch:
    ρ_t = exp(log π_θ − log π_old)
    L_π = E max(−Â_t ρ_t, −Â_t clip(ρ_t, 1 − ε, 1 + ε))
    L_V = ½ E max((V − R)², (clip(V, V_old − ε_v, V_old + ε_v) − R)²)
The value head is a linear layer on the policy's final hidden state (shared trunk).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from deepatlas.alignment.reward import captured_hidden
from deepatlas.generation.decode import SamplingSettings, generate
from deepatlas.models.gpt import GPT


# ---- the pieces, each checked on its own (tests/alignment/test_ppo.py) ------------------------

def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return logp - ref_logp                                   # log π_θ − log π_ref


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    log_rho = ref_logp - logp                                # log ρ = log π_ref − log π_θ
    return torch.expm1(log_rho) - log_rho                    # (ρ − 1) − log ρ


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x − mean) / std over the masked entries (unbiased variance, as trl)."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask) * n / (n - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + eps)
    return (out if shift_mean else out + mean) * mask


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95
        ) -> tuple[Tensor, Tensor]:
    """rewards, values, mask (B, T), mask 1 on one contiguous run of action steps per row
    -> (advantages Â, returns R = Â + V), zero off the mask. The step after a row's last action
    is terminal: V = 0 there."""
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)   # Â_{t+1}
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]      # δ_t = r_t + γV_{t+1} − V_t
        last = (delta + gamma * lam * last) * m                         # Â_t = δ_t + γλ Â_{t+1}
        adv[:, t] = last
        next_value = values[:, t] * m                                   # 0 past the end
    return adv, (adv + values) * mask


def clipped_policy_loss(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, clip: float = 0.2
                        ) -> tuple[Tensor, Tensor]:
    """-> (L_π, share of tokens where the clip is active)."""
    ratio = torch.exp(logp - old_logp)                                  # ρ_t
    losses = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    clipped = ((-adv * ratio.clamp(1 - clip, 1 + clip)) > (-adv * ratio)).float()
    return masked_mean(losses, mask), masked_mean(clipped, mask)


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
                       clip: float = 0.2) -> Tensor:
    v_clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (v_clipped - returns) ** 2), mask)


# ---- the policy with a value head, rollouts, the update -------------------------------------

class PolicyWithValue(nn.Module):
    """π_θ (a GPT) and V(s) = w · h_L(s) + b from the same trunk; forward -> (logits, values)."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt
        self.v_head = nn.Linear(gpt.config.n_embd, 1)
        nn.init.zeros_(self.v_head.weight), nn.init.zeros_(self.v_head.bias)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        with captured_hidden(self.gpt) as hidden:
            logits = self.gpt(ids)                                      # (B, T, V)
        return logits, self.v_head(hidden[-1]).squeeze(-1)              # (B, T)


def token_logps(logits: Tensor, ids: Tensor) -> Tensor:
    """logits (B, T, V) of positions 0..T-1, ids (B, T+1) -> log π(ids_{t+1} | ids_≤t) (B, T)."""
    return -torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten(),
                                              reduction="none").view(ids.shape[0], -1)


@dataclass
class PPOConfig:
    iterations: int = 60
    rollouts: int = 32             # responses per PPO batch
    max_new_tokens: int = 12
    ppo_epochs: int = 4
    minibatch: int = 16
    lr: float = 3e-4
    kl_coef: float = 0.05          # β of the per-token KL penalty (0 = none: reward hacking)
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    clip_value: float = 0.2
    vf_coef: float = 0.1
    temperature: float = 1.0
    seed: int = 0


@dataclass
class Rollout:
    ids: Tensor           # (B, L) prompt + response, right-padded
    mask: Tensor          # (B, L-1) 1 where target t+1 is a response token (the actions)
    logp: Tensor          # (B, L-1) log π_old of the targets
    ref_logp: Tensor
    values: Tensor        # (B, L-1) V_old of the state before each target
    scores: Tensor        # (B,) reward-model score of each response
    responses: list[list[int]]


@torch.no_grad()
def rollout(policy: PolicyWithValue, ref: GPT, reward_fn: Callable[[Tensor, Tensor], Tensor],
            prompts: Sequence[list[int]], cfg: PPOConfig, stop_id: int, pad_id: int, seed: int) -> Rollout:
    """Sample responses, then score them and record log π_old, log π_ref and V_old of each token.
    reward_fn(ids (B, L), real-token mask (B, L)) -> (B,)."""
    settings = SamplingSettings(greedy=False, temperature=cfg.temperature)
    responses = generate(policy.gpt, prompts, cfg.max_new_tokens, settings, stop_ids=[stop_id], seed=seed)
    L = max(len(p) + len(r) for p, r in zip(prompts, responses))
    ids = torch.full((len(prompts), L), pad_id, dtype=torch.long)
    real = torch.zeros(len(prompts), L, dtype=torch.long)
    mask = torch.zeros(len(prompts), L - 1)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, :len(p) + len(r)] = torch.tensor(p + r)
        real[i, :len(p) + len(r)] = 1
        mask[i, len(p) - 1:len(p) + len(r) - 1] = 1          # target positions of the response
    policy.eval()
    logits, values = policy(ids[:, :-1])
    logp = token_logps(logits, ids)
    ref_logp = token_logps(ref(ids[:, :-1]), ids)
    return Rollout(ids, mask, logp * mask, ref_logp * mask, values * mask, reward_fn(ids, real), responses)


def ppo_step(policy: PolicyWithValue, optimizer: torch.optim.Optimizer, ro: Rollout, cfg: PPOConfig,
             generator: torch.Generator) -> dict:
    """Rewards → GAE → cfg.ppo_epochs epochs of clipped updates on minibatches of the rollout."""
    kl = kl_k1(ro.logp, ro.ref_logp) * ro.mask                          # k1 per token (B, T)
    rewards = -cfg.kl_coef * kl
    last = ro.mask.cumsum(1).argmax(1)                                  # each row's last action
    rewards[torch.arange(len(last)), last] += ro.scores                 # + r_φ(x, y) at the end
    adv, returns = gae(rewards, ro.values, ro.mask, cfg.gamma, cfg.lam)
    adv = masked_whiten(adv, ro.mask)
    stats = {"pg_loss": 0.0, "vf_loss": 0.0, "clipfrac": 0.0}
    n = 0
    policy.train()
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(len(ro.ids), generator=generator)
        for start in range(0, len(order), cfg.minibatch):
            b = order[start:start + cfg.minibatch]
            logits, values = policy(ro.ids[b, :-1])
            logp = token_logps(logits, ro.ids[b])
            pg, clipfrac = clipped_policy_loss(logp, ro.logp[b], adv[b], ro.mask[b], cfg.clip)
            vf = clipped_value_loss(values, ro.values[b], returns[b], ro.mask[b], cfg.clip_value)
            loss = pg + cfg.vf_coef * vf
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            for key, value in (("pg_loss", pg), ("vf_loss", vf), ("clipfrac", clipfrac)):
                stats[key] += float(value.detach())
            n += 1
    policy.eval()
    stats = {k: v / n for k, v in stats.items()}
    stats.update(score=float(ro.scores.mean()), kl_k1=float(kl.sum(1).mean()),
                 kl_k3=float((kl_k3(ro.logp, ro.ref_logp) * ro.mask).sum(1).mean()),
                 response_tokens=float(ro.mask.sum(1).mean()))
    return stats


def train_ppo(gpt: GPT, reward_fn: Callable[[Tensor, Tensor], Tensor], prompt_pool: Sequence[list[int]],
              cfg: PPOConfig, stop_id: int, pad_id: int, log: Callable[[dict], None] | None = None
              ) -> tuple[GPT, list[dict]]:
    """PPO from `gpt` (the SFT model, also the frozen reference) -> (the policy, per-iteration stats)."""
    ref = copy.deepcopy(gpt).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    policy = PolicyWithValue(copy.deepcopy(gpt))
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr, eps=1e-5)
    g = torch.Generator().manual_seed(cfg.seed)
    history = []
    for it in range(cfg.iterations):
        start = time.time()
        pick = torch.randint(0, len(prompt_pool), (cfg.rollouts,), generator=g).tolist()
        ro = rollout(policy, ref, reward_fn, [prompt_pool[i] for i in pick], cfg, stop_id, pad_id,
                     seed=cfg.seed * 1_000_003 + it)
        rollout_s = time.time() - start
        stats = ppo_step(policy, optimizer, ro, cfg, g)
        stats.update(iteration=it, rollout_s=rollout_s, seconds=time.time() - start)
        history.append(stats)
        if log is not None:
            log(stats)
    return policy.gpt, history
