"""Greedy and beam-search decoding for any model given as a next-token function.

    step(tokens: (N, t) LongTensor) -> log-probabilities of the next token (N, V)

Row i of a batch of B sources with K beams is tokens[i] with i = b·K + k: hypotheses never move
between sources, so the step function can repeat each source's encoder output K times once.
Beam search (Graves 2012; as used by Sutskever et al. 2014 and Vaswani et al. 2017 §6.1) ranks
finished hypotheses by the GNMT length-normalised score (Wu et al. 2016, eq. 14):

    s(Y, X) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6)^α
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Step = Callable[[Tensor], Tensor]


def strip(row: list[int], eos: int) -> list[int]:
    """Generated ids after BOS, up to (without) the first EOS."""
    row = row[1:]
    return row[: row.index(eos)] if eos in row else row


def greedy_decode(step: Step, batch: int, bos: int, eos: int, max_len: int,
                  device: str | torch.device = "cpu") -> list[list[int]]:
    """argmax token at each position until EOS or max_len new tokens."""
    tokens = torch.full((batch, 1), bos, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for _ in range(max_len):
        nxt = step(tokens).argmax(dim=-1)                             # (B,)
        nxt = torch.where(done, torch.full_like(nxt, eos), nxt)       # finished rows only pad with EOS
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eos
        if bool(done.all()):
            break
    return [strip(row, eos) for row in tokens.tolist()]


def length_penalty_of(length: Tensor, alpha: float) -> Tensor:
    # lp(Y) = ((5 + |Y|) / 6)^α     (Wu et al. 2016, eq. 14)
    return ((5.0 + length.float()) / 6.0) ** alpha


def beam_search(step: Step, batch: int, bos: int, eos: int, max_len: int, beam_size: int = 4,
                length_penalty: float = 0.6, device: str | torch.device = "cpu"
                ) -> tuple[list[list[int]], list[float]]:
    """Keep the beam_size most probable prefixes per source -> best token lists, their normalised scores.

    A hypothesis that emitted EOS stays in its beam, extended by EOS at log-prob 0, so its score
    is frozen while the others grow; the search stops when every hypothesis has finished.
    """
    B, K = batch, beam_size
    if K < 1:
        raise ValueError(f"beam_size must be ≥ 1, got {beam_size}")
    tokens = torch.full((B * K, 1), bos, dtype=torch.long, device=device)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0                      # one live start per source; its copies would be duplicates
    done = torch.zeros(B * K, dtype=torch.bool, device=device)
    lengths = torch.zeros(B * K, dtype=torch.long, device=device)   # |Y|, EOS included
    for _ in range(max_len):
        logp = step(tokens)                                           # (B·K, V)
        V = logp.size(-1)
        eos_only = torch.full_like(logp[0], float("-inf"))
        eos_only[eos] = 0.0
        logp = torch.where(done[:, None], eos_only, logp)
        # log P(y_1..t) = log P(y_1..t-1) + log p(y_t | y_<t)        (B, K·V)
        candidates = (scores.reshape(B * K, 1) + logp).reshape(B, K * V)
        scores, flat = candidates.topk(K, dim=-1)                     # (B, K)
        parent = (torch.arange(B, device=device)[:, None] * K + flat // V).flatten()  # (B·K,)
        new = (flat % V).flatten()
        tokens = torch.cat([tokens[parent], new[:, None]], dim=1)
        lengths = lengths[parent] + (~done[parent]).long()
        done = done[parent] | (new == eos)
        if bool(done.all()):
            break
    normalised = scores / length_penalty_of(lengths.view(B, K), length_penalty)
    best = normalised.argmax(dim=-1)                                  # (B,)
    rows = tokens.view(B, K, -1)[torch.arange(B, device=device), best].tolist()
    return [strip(r, eos) for r in rows], normalised.max(dim=-1).values.tolist()
