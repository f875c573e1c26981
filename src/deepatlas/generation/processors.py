"""Logits processors for sampling: temperature, top-k, top-p (nucleus), repetition penalty.

Each is a pure function `logits (..., V) -> logits (..., V)` that never modifies its input;
removed tokens get -inf so that a softmax gives them probability exactly 0. They compose in the
order `decode.generate` applies them: repetition penalty, temperature, top-k, top-p.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def check_sampling_settings(temperature: float = 1.0, top_k: int | None = None,
                            top_p: float | None = None, repetition_penalty: float = 1.0) -> None:
    """Raise ValueError naming the bad value and the valid range; None means 'off'."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)) or temperature <= 0:
        raise ValueError(f"temperature={temperature!r} must be > 0; for temperature 0 use greedy "
                         f"decoding (greedy=True)")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k={top_k!r} must be an integer ≥ 1 (or None for no top-k filter)")
    if top_p is not None and not (0.0 < top_p <= 1.0):
        raise ValueError(f"top_p={top_p!r} must lie in (0, 1] (or None for no nucleus filter)")
    if not (repetition_penalty > 0 and math.isfinite(repetition_penalty)):
        raise ValueError(f"repetition_penalty={repetition_penalty!r} must be a finite number > 0 "
                         f"(1.0 = no penalty)")


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """p_i ∝ exp(z_i / T): T < 1 sharpens the distribution, T > 1 flattens it."""
    check_sampling_settings(temperature=temperature)
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row (Fan et al. 2018), -inf elsewhere.

    Ties at the k-th value are broken by torch.topk's order, so exactly k tokens survive."""
    check_sampling_settings(top_k=k)
    k = min(k, logits.size(-1))
    top_idx = logits.topk(k, dim=-1).indices                          # (..., k)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, top_idx, True)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus sampling (Holtzman et al. 2020, eq. 2): keep the smallest set V⁽ᵖ⁾ of most likely
    tokens with  Σ_{x ∈ V⁽ᵖ⁾} P(x) ≥ p,  -inf elsewhere.

    In probability order, token i is kept iff the mass of the tokens before it is still < p:
    then the kept set reaches p and no smaller prefix does."""
    check_sampling_settings(top_p=p)
    if p >= 1.0:  # every token; avoids dropping the tail to rounding in the cumulative sum
        return logits.clone()
    sorted_logits, order = logits.sort(dim=-1, descending=True)      # (..., V)
    probs = sorted_logits.float().softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs                        # Σ_{j<i} p_j
    keep_sorted = mass_before < p                                     # the first token always stays
    keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def repetition_penalty(logits: Tensor, previous: Tensor, penalty: float,
                       previous_mask: Tensor | None = None) -> Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, sec. 4.1): every token already in the text
    has its score made less likely by θ = penalty — a positive logit is divided by θ, a negative one
    multiplied by θ (dividing a negative logit would *raise* it).

    logits: (B, V); previous: (B, L) token ids seen so far; previous_mask: (B, L) bool, False for
    padding positions whose ids must not count."""
    check_sampling_settings(repetition_penalty=penalty)
    if penalty == 1.0 or previous.numel() == 0:
        return logits.clone()
    # count the unmasked occurrences of each token id                   (B, V)
    counts = torch.zeros(logits.shape, dtype=torch.long, device=logits.device)
    hits = torch.ones_like(previous) if previous_mask is None else previous_mask.long()
    seen = counts.scatter_add_(-1, previous, hits) > 0
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def process_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, penalty: float = 1.0,
                   previous: Tensor | None = None, previous_mask: Tensor | None = None) -> Tensor:
    """All sampling processors in generate's order: penalty, temperature, top-k, top-p."""
    check_sampling_settings(temperature, top_k, top_p, penalty)
    if penalty != 1.0 and previous is not None:
        logits = repetition_penalty(logits, previous, penalty, previous_mask)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits
