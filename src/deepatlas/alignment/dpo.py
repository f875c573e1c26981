"""Direct preference optimisation (DPO, map place T5) and IPO — preferences without RL.

Rafailov et al. 2023, eq. (7): with h = log π_θ(y_w|x) − log π_ref(y_w|x) − (log π_θ(y_l|x) − log π_ref(y_l|x)),

    L_DPO   = − log σ(β · h)                                         loss_type="sigmoid"
    L_hinge = max(0, 1 − β · h)                                      loss_type="hinge" (SLiC)
    L_IPO   = (h̄ − 1/(2β))²,  h̄ = the log-ratios averaged per token  loss_type="ipo" (Azar et al. 2023, eq. 17)

The implicit reward of a response is r̂(x, y) = β · log(π_θ(y|x) / π_ref(y|x)) (DPO §4); the loss
raises r̂(chosen) − r̂(rejected). These are trl's DPOTrainer losses term for term (trl 1.16,
tests/alignment/test_dpo.py runs its loss code on the same log-probabilities).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOSS_TYPES = ("sigmoid", "hinge", "ipo")


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float = 0.1, loss_type: str = "sigmoid", chosen_tokens: Tensor | None = None,
             rejected_tokens: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Summed response log-probs (B,) each -> (per-pair loss (B,), r̂ chosen (B,), r̂ rejected (B,)).

    IPO needs chosen_tokens / rejected_tokens (B,), the number of response tokens of each."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type {loss_type!r}; valid: {', '.join(LOSS_TYPES)}")
    if beta <= 0:
        raise ValueError(f"beta={beta} must be > 0")
    chosen_ratio = policy_chosen - ref_chosen                  # log π_θ(y_w|x)/π_ref(y_w|x)   (B,)
    rejected_ratio = policy_rejected - ref_rejected            # log π_θ(y_l|x)/π_ref(y_l|x)   (B,)
    h = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h)                       # − log σ(β h)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)                      # max(0, 1 − β h)
    else:
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("loss_type='ipo' averages per token: pass chosen_tokens and rejected_tokens")
        h_bar = chosen_ratio / chosen_tokens.clamp(min=1) - rejected_ratio / rejected_tokens.clamp(min=1)
        losses = (h_bar - 1 / (2 * beta)) ** 2                 # (h̄ − 1/(2β))²
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def response_logps(model: nn.Module, ids: Tensor, mask: Tensor) -> Tensor:
    """Σ_t mask_t · log π(ids_{t+1} | ids_≤t) per row: ids (B, T) right-padded, mask (B, T) 1 on
    the response tokens (as targets) -> (B,). Right padding needs no attention mask (causal)."""
    logits = model(ids[:, :-1])                                # (B, T-1, V)
    # log π(y_t | ·) = −CE(logits_t, y_t): log-softmax and gather fused in one kernel
    token_logp = -F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten(),
                                  reduction="none").view(ids.shape[0], -1)   # (B, T-1)
    return (token_logp * mask[:, 1:]).sum(-1)


def pad_rows(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[Tensor, Tensor]:
    """[(ids, mask)] -> right-padded ids (B, L) and mask (B, L)."""
    L = max(len(ids) for ids, _ in rows)
    ids_t = torch.full((len(rows), L), pad_id, dtype=torch.long)
    mask_t = torch.zeros((len(rows), L))
    for i, (ids, mask) in enumerate(rows):
        ids_t[i, :len(ids)] = torch.tensor(ids)
        mask_t[i, :len(mask)] = torch.tensor(mask, dtype=torch.float)
    return ids_t, mask_t


def dpo_step(policy: nn.Module, optimizer: torch.optim.Optimizer, chosen: tuple[Tensor, Tensor],
             rejected: tuple[Tensor, Tensor], ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float, loss_type: str = "sigmoid") -> dict:
    """One update on a batch of pairs; chosen/rejected = (ids, mask); the reference log-probs are
    computed once beforehand (the reference is frozen). -> loss, reward accuracy, margin."""
    width = max(chosen[0].shape[1], rejected[0].shape[1])
    ids = torch.cat([_pad_to(chosen[0], width), _pad_to(rejected[0], width)])  # (2B, L)
    mask = torch.cat([_pad_to(chosen[1], width), _pad_to(rejected[1], width)])
    logps = response_logps(policy, ids, mask)                  # chosen and rejected in one forward
    pc, pr = logps.chunk(2)
    n_c, n_r = mask.chunk(2)
    losses, rc, rr = dpo_loss(pc, pr, ref_chosen, ref_rejected, beta, loss_type,
                              n_c[:, 1:].sum(-1), n_r[:, 1:].sum(-1))
    loss = losses.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    optimizer.step()
    return {"loss": float(loss.detach()), "reward_acc": float((rc > rr).float().mean()),
            "margin": float((rc - rr).mean())}


def _pad_to(t: Tensor, width: int) -> Tensor:
    return F.pad(t, (0, width - t.shape[1])) if t.shape[1] < width else t
