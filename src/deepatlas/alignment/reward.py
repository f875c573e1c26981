"""Reward model (map place T4): the policy's architecture with a scalar head, Bradley–Terry loss.

InstructGPT (Ouyang et al. 2022) step 2. r_φ(x, y) = w · h_L(x, y)_last + b: the final hidden
state (after the last LayerNorm) at the response's last token, through a linear head. Trained on
pairs (chosen y_w, rejected y_l) with the Bradley–Terry likelihood P(y_w ≻ y_l) = σ(r_w − r_l):

    L_RM = − E log σ(r_φ(x, y_w) − r_φ(x, y_l))
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.gpt import GPT


@contextmanager
def captured_hidden(gpt: GPT) -> Iterator[list[Tensor]]:
    """Within the block, each gpt(...) call appends LN_f(h_L) (B, T, d) — the hidden states the
    LM head reads — to the yielded list (a forward hook; models/gpt.py stays untouched)."""
    out: list[Tensor] = []
    handle = gpt.ln_f.register_forward_hook(lambda _m, _i, o: out.append(o))
    try:
        yield out
    finally:
        handle.remove()


def last_index(mask: Tensor) -> Tensor:
    """(B, T) 0/1 mask of real tokens (right-padded) -> (B,) index of each row's last real token."""
    return mask.long().sum(1) - 1


class RewardModel(nn.Module):
    """A copy of a GPT's trunk + a scalar head; forward(ids, mask) -> rewards (B,)."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = copy.deepcopy(gpt)
        self.head = nn.Linear(gpt.config.n_embd, 1)
        nn.init.zeros_(self.head.weight), nn.init.zeros_(self.head.bias)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids (B, T) right-padded, mask (B, T) 1 on real tokens -> r (B,) at the last real token."""
        with captured_hidden(self.gpt) as hidden:
            self.gpt(ids)
        h = hidden[-1]                                                    # (B, T, d)
        last = h[torch.arange(len(ids)), last_index(mask)]                # (B, d)
        return self.head(last).squeeze(-1)                                # (B,)


def bradley_terry_loss(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """− mean log σ(r_w − r_l)."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def train_reward_model(rm: RewardModel, chosen: tuple[Tensor, Tensor], rejected: tuple[Tensor, Tensor],
                       steps: int, batch_size: int = 32, lr: float = 1e-3, seed: int = 0) -> list[float]:
    """Minimise L_RM over random batches of the pairs; chosen/rejected = (ids (N, L), mask (N, L))."""
    opt = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    losses = []
    rm.train()
    for _ in range(steps):
        idx = torch.randint(0, len(chosen[0]), (batch_size,), generator=g)
        both = torch.cat([chosen[0][idx], rejected[0][idx]]), torch.cat([chosen[1][idx], rejected[1][idx]])
        r_c, r_r = rm(*both).chunk(2)
        loss = bradley_terry_loss(r_c, r_r)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    rm.eval()
    return losses


@torch.no_grad()
def score(rm: RewardModel, ids: Tensor, mask: Tensor, batch_size: int = 128) -> Tensor:
    rm.eval()
    return torch.cat([rm(ids[i:i + batch_size], mask[i:i + batch_size])
                      for i in range(0, len(ids), batch_size)])


@torch.no_grad()
def pair_accuracy(rm: RewardModel, chosen: tuple[Tensor, Tensor], rejected: tuple[Tensor, Tensor]) -> float:
    """Share of pairs the reward model ranks like the labels (r_w > r_l)."""
    return float((score(rm, *chosen) > score(rm, *rejected)).float().mean())


def real_mask(lengths: Sequence[int], width: int) -> Tensor:
    return (torch.arange(width)[None, :] < torch.tensor(list(lengths))[:, None]).long()
