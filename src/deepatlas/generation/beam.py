"""Beam search with a length penalty (model interface: see decode.py).

Keeps the `num_beams` most likely partial continuations y_1..y_t of one prompt, scored by
    log P(y_1..y_t | x) = Σ_i log P(y_i | x, y_<i),
and ranks finished hypotheses by the length-normalised score (as in Hugging Face's generate)
    score(y) = log P(y | x) / |y|^α,    α = length_penalty (0: none; > 0 favours longer outputs).
A hypothesis finishes when it emits `eos_id` (the EOS counts in |y|) or reaches max_new_tokens.
With num_beams ≥ V^(L-1) no prefix is ever dropped, so it returns the exhaustive optimum over
all outputs of up to L tokens (tests/generation/test_beam.py checks exactly that).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from deepatlas.generation.decode import check_prompts


@dataclass
class Hypothesis:
    tokens: list[int]    # the new tokens (EOS included when it ended the hypothesis)
    logprob: float       # Σ_i log P(y_i | x, y_<i)
    score: float         # logprob / len^α


def length_normalised(logprob: float, length: int, length_penalty: float) -> float:
    """score(y) = log P(y | x) / |y|^α."""
    return logprob / (length ** length_penalty)


@torch.no_grad()
def beam_search(model: nn.Module, prompt: Sequence[int], num_beams: int, max_new_tokens: int,
                length_penalty: float = 1.0, eos_id: int | None = None,
                use_cache: bool = True) -> list[Hypothesis]:
    """The best `num_beams` hypotheses, best first."""
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams={num_beams!r} must be an integer ≥ 1 (1 = greedy)")
    check_prompts(model, [prompt], max_new_tokens)
    model.eval()
    device = next(model.parameters()).device
    prompt_ids = torch.tensor([list(prompt)], dtype=torch.long, device=device)   # (1, P)
    cache = model.new_cache(num_beams, len(prompt) + max_new_tokens) if use_cache else None
    seqs = torch.empty(1, 0, dtype=torch.long, device=device)        # (n_live, t) new tokens
    beam_lp = torch.zeros(1, device=device)                          # (n_live,) log P(y | x)
    finished: list[Hypothesis] = []
    for t in range(max_new_tokens):
        if cache is not None:    # feed only the last token; the cache holds each beam's history
            step = prompt_ids if t == 0 else seqs[:, -1:]
            logits = model(step, cache=cache)[:, -1]                 # (n_live, V)
        else:
            full = torch.cat([prompt_ids.expand(len(seqs), -1), seqs], 1)
            logits = model(full)[:, -1]
        V = logits.size(-1)
        # log P(y_1..t+1) = log P(y_1..t) + log P(y_t+1 | y_≤t)         (n_live, V)
        cand = beam_lp[:, None] + logits.float().log_softmax(-1)
        top = cand.flatten().topk(min(2 * num_beams, cand.numel()))
        parents, tokens, lps = [], [], []
        for lp, flat in zip(top.values.tolist(), top.indices.tolist()):
            parent, token = divmod(flat, V)
            if eos_id is not None and token == eos_id:
                ys = seqs[parent].tolist() + [token]
                finished.append(Hypothesis(ys, lp, length_normalised(lp, len(ys), length_penalty)))
            else:
                parents.append(parent), tokens.append(token), lps.append(lp)
            if len(parents) == num_beams:
                break
        if not parents:
            break
        index = torch.tensor(parents, device=device)
        seqs = torch.cat([seqs[index], torch.tensor(tokens, device=device)[:, None]], 1)
        beam_lp = torch.tensor(lps, device=device)
        if cache is not None:
            cache.reorder(index)                                     # each beam keeps its parent's keys
    for ys, lp in zip(seqs.tolist(), beam_lp.tolist()):              # still alive at the length limit
        if ys:
            finished.append(Hypothesis(ys, lp, length_normalised(lp, len(ys), length_penalty)))
    return sorted(finished, key=lambda h: -h.score)[:num_beams]
