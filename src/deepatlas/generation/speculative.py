"""Speculative decoding, greedy and exact: a cheap draft proposes k tokens, the target checks them at once.

Leviathan et al. 2023 / Chen et al. 2023 (greedy case): with the target's next token
x_{t+1} = argmax P(x | x_≤t), a draft d_1..d_k is checked by ONE target pass over [x_t, d_1..d_k]
(k + 1 positions), which gives the target's own choices g_0..g_k at every draft position:

    accept j = max { j : d_i = g_{i-1} for all i ≤ j };   emit d_1..d_j, then g_j

so every emitted token is exactly the target's greedy token (the output equals plain greedy
decoding token for token), and one target pass yields j + 1 tokens instead of 1. On a
memory-bound CPU a pass over k + 1 positions costs about one pass over 1 (the weights are read
once), so the speed-up is ≈ (E[j] + 1) / (1 + k · draft cost / target cost). Drafts here:

    prompt lookup   (Saxena 2023, "prompt lookup decoding"): find the latest earlier occurrence of
                    the last n tokens (n = 3, 2, 1) and propose the k tokens that followed it —
                    free, and right whenever the answer copies its context (quotes, edits, code);
    a draft model   a smaller/cheaper model's greedy tokens, e.g. the int4 copy of an fp32 model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch

from deepatlas.generation.fast_decode import FastLlama


class Drafter(Protocol):
    def propose(self, seq: Sequence[int], k: int) -> list[int]:
        """Up to k tokens guessed to follow seq (fewer or none is fine)."""


class PromptLookup:
    """Propose the continuation of the latest earlier match of the sequence's last n-gram."""

    def __init__(self, max_ngram: int = 3):
        self.max_ngram = max_ngram

    def propose(self, seq: Sequence[int], k: int) -> list[int]:
        seq = list(seq)
        for n in range(min(self.max_ngram, len(seq) - 1), 0, -1):
            tail = seq[-n:]
            for start in range(len(seq) - n - 1, -1, -1):          # latest match first
                if seq[start:start + n] == tail:
                    return seq[start + n:start + n + k]
        return []


class DraftModel:
    """A draft FastLlama's greedy tokens; its cache follows the accepted sequence (slot 0)."""

    def __init__(self, fast: FastLlama):
        self.fast = fast
        self.held: list[int] = []                                  # tokens in the draft's cache

    def propose(self, seq: Sequence[int], k: int) -> list[int]:
        seq = list(seq)
        n = 0                                                      # common prefix of cache and seq
        while n < min(len(self.held), len(seq) - 1) and self.held[n] == seq[n]:
            n += 1
        self.fast.crop(0, n)
        if n == 0:
            logits = self.fast.prefill(0, seq)
        else:
            logits = self.fast.extend(0, seq[n:])[-1]
        out = [int(logits.argmax())]
        while len(out) < k:
            out.append(int(self.fast.step([out[-1]])[0].argmax()))
        self.held = seq + out[:-1]                                 # the last draft is not in its cache
        return out


@dataclass
class SpecStats:
    passes: int = 0           # target passes (prefill not counted)
    proposed: int = 0
    accepted: int = 0
    draft_lengths: list[int] = field(default_factory=list)

    @property
    def acceptance(self) -> float:
        return self.accepted / max(self.proposed, 1)

    @property
    def tokens_per_pass(self) -> float:
        return (self.accepted + self.passes) / max(self.passes, 1)


@torch.inference_mode()
def speculative_greedy(target: FastLlama, drafter: Drafter, prompt: Sequence[int], max_new_tokens: int,
                       k: int = 4, stop_ids: Sequence[int] = ()) -> tuple[list[int], SpecStats]:
    """The target's greedy tokens (equal to fast_decode.greedy), checked k drafts at a time."""
    if k < 1:
        raise ValueError(f"k={k} draft tokens per pass must be ≥ 1")
    stats = SpecStats()
    if max_new_tokens <= 0:
        return [], stats
    seq = list(prompt)
    out = [int(target.prefill(0, seq).argmax())]                  # x_{t+1}: not yet in the cache
    seq.append(out[-1])
    while len(out) < max_new_tokens and out[-1] not in stop_ids:
        room = min(k, max_new_tokens - len(out), target.cache.max_len - len(seq))
        draft = drafter.propose(seq, room)[:room] if room > 0 else []
        held = target.cache.lengths[0]                              # = len(seq) - 1
        logits = target.extend(0, [seq[-1]] + draft)               # (1 + len(draft), V)
        g = logits.argmax(-1).tolist()                             # the target's choices g_0..g_k
        j = 0
        while j < len(draft) and draft[j] == g[j]:
            j += 1
        stats.passes += 1
        stats.proposed += len(draft)
        stats.accepted += j
        stats.draft_lengths.append(len(draft))
        new = draft[:j] + [g[j]]
        for t in new:                                              # stop inside the accepted run
            out.append(t)
            seq.append(t)
            if t in stop_ids or len(out) >= max_new_tokens:
                break
        target.crop(0, held + 1 + j)                               # x_t and the accepted drafts
    return out[:max_new_tokens], stats
