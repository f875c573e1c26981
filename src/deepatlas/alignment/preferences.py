"""Preference data and evaluation shared by T4 (RLHF / RLAIF) and T5 (DPO).

PROMPTS: the "continue the sentence" family of deepatlas.alignment.data (train lines for
training, held-out lines and the held-out phrasing for evaluation).
PAIRS: for each prompt the SFT model samples k replies (temperature 1); the pair is the reply the
rule (data.rule_score: more distinct real words, pleasant words count extra, unpleasant ones
count against, and it must end its turn) likes
most vs the one it likes least; prompts whose replies all tie give no pair. RLAIF labels the same
kind of pairs with SmolLM2-135M-Instruct as the judge (deepatlas.alignment.judge).
WIN RATE vs SFT: on each held-out prompt one sampled reply of the policy vs one of the SFT
model (same seed), judged by the rule: a win counts 1, a tie ½.
KL to the reference: Σ_t log π(y_t|·) − log π_ref(y_t|·) over the policy's own sampled replies
(the k1 estimate of KL(π ‖ π_ref) per response, nats).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from deepatlas.alignment.base import ChatLM
from deepatlas.alignment.data import instruction_set, prompt_text, rule_score
from deepatlas.alignment.dpo import pad_rows, response_logps
from deepatlas.chat.template import IM_END
from deepatlas.generation.decode import SamplingSettings, generate


@dataclass
class Reply:
    user: str
    ids: list[int]        # response tokens (with <|im_end|> when it ended its turn)
    text: str
    ended: bool


def continue_prompts(n: int, split: str, seed: int = 0) -> list[str]:
    return [e.prompt for e in instruction_set(n, split, seed=seed, families=("continue",))]


@torch.no_grad()
def sample(lm: ChatLM, users: Sequence[str], max_new_tokens: int, seed: int,
           temperature: float = 1.0, batch: int = 128) -> list[Reply]:
    stop = lm.token(IM_END)
    out = []
    for i in range(0, len(users), batch):
        part = users[i:i + batch]
        gen = generate(lm.model, [lm.encode(prompt_text(u)) for u in part], max_new_tokens,
                       SamplingSettings(greedy=False, temperature=temperature), stop_ids=[stop], seed=seed + i)
        out += [Reply(u, g, lm.decode([t for t in g if t != stop]).strip(), stop in g) for u, g in zip(part, gen)]
    return out


def score_reply(r: Reply) -> float:
    return rule_score(r.text, r.ended)


@dataclass
class Pairs:
    users: list[str]
    chosen: list[Reply]
    rejected: list[Reply]


def rule_pairs(lm: ChatLM, users: Sequence[str], k: int, max_new_tokens: int, seed: int,
               judge: Callable[[Reply], float] = score_reply) -> Pairs:
    """Best vs worst of k sampled replies per prompt under `judge`; ties give no pair."""
    replies = sample(lm, [u for u in users for _ in range(k)], max_new_tokens, seed)
    pairs = Pairs([], [], [])
    for i, u in enumerate(users):
        group = replies[i * k:(i + 1) * k]
        scores = [judge(r) for r in group]
        best, worst = max(range(k), key=scores.__getitem__), min(range(k), key=scores.__getitem__)
        if scores[best] > scores[worst]:
            pairs.users.append(u), pairs.chosen.append(group[best]), pairs.rejected.append(group[worst])
    return pairs


def conversation_tensors(lm: ChatLM, replies: Sequence[Reply]) -> tuple[Tensor, Tensor, Tensor]:
    """-> ids (N, L) right-padded prompt + response, real-token mask (N, L), response mask (N, L)."""
    rows, reals = [], []
    for r in replies:
        p = lm.encode(prompt_text(r.user))
        rows.append((p + r.ids, [0] * len(p) + [1] * len(r.ids)))
        reals.append(len(p) + len(r.ids))
    ids, resp = pad_rows(rows, lm.token("<|endoftext|>"))
    real = (torch.arange(ids.shape[1])[None, :] < torch.tensor(reals)[:, None]).long()
    return ids, real, resp


def rm_reward_fn(rm) -> Callable[[Tensor, Tensor], Tensor]:
    @torch.no_grad()
    def fn(ids: Tensor, real: Tensor) -> Tensor:
        return rm(ids, real)
    return fn


@torch.no_grad()
def kl_to_reference(policy: ChatLM, ref: ChatLM, replies: Sequence[Reply]) -> float:
    """Mean Σ_t (log π − log π_ref) over the policy's sampled replies (nats per response)."""
    ids, _, resp = conversation_tensors(policy, replies)
    return float((response_logps(policy.model, ids, resp) - response_logps(ref.model, ids, resp)).mean())


def win_rate(policy_replies: Sequence[Reply], sft_replies: Sequence[Reply]) -> float:
    """Share of prompts where the rule prefers the policy's reply (ties count ½)."""
    wins = 0.0
    for a, b in zip(policy_replies, sft_replies):
        sa, sb = score_reply(a), score_reply(b)
        wins += 1.0 if sa > sb else 0.5 if sa == sb else 0.0
    return wins / len(policy_replies)


def distinct_ratio(replies: Sequence[Reply]) -> float:
    """Distinct words / words over all replies: low when the policy repeats itself."""
    words = [w for r in replies for w in r.text.lower().split()]
    return len(set(words)) / max(1, len(words))


def evaluate_policy(policy: ChatLM, sft: ChatLM, users: Sequence[str], max_new_tokens: int, seed: int,
                    sft_replies: Sequence[Reply] | None = None, rm=None) -> dict:
    """Rule score, win rate vs SFT, KL to SFT, reward-model score, ends-turn, distinct words."""
    replies = sample(policy, users, max_new_tokens, seed)
    sft_replies = sft_replies if sft_replies is not None else sample(sft, users, max_new_tokens, seed)
    out = {"rule_score": sum(map(score_reply, replies)) / len(replies),
           "win_rate": win_rate(replies, sft_replies),
           "kl": kl_to_reference(policy, sft, replies),
           "ends_turn": sum(r.ended for r in replies) / len(replies),
           "distinct": distinct_ratio(replies), "replies": replies}
    if rm is not None:
        ids, real, _ = conversation_tensors(policy, replies)
        out["rm_score"] = float(rm_reward_fn(rm)(ids, real).mean())
    return out
