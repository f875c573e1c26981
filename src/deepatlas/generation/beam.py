"""Beam search with a length penalty: one search for decoder-only LMs and encoder-decoders.

The model enters as a next-token function (Graves 2012; Sutskever et al. 2014; Vaswani et al. 2017 §6.1):

    step(tokens (N, t), parents (N,) | None) -> log P(next token | tokens)   (N, V)

Row b·K + k of `tokens` is beam k of source b (K = num_beams), so beams never move between
sources and an encoder output repeated K times per source serves every step. `parents[i]` is
the row of the previous call that row i continues (None on the first call): a step with a KV
cache reorders it by `parents` and feeds only the last token; one without recomputes the prefix
(make_step builds both from a forward function).

The search keeps the K most likely live (not yet ended) continuations y_1..y_t of each source,
    log P(y_1..t | x) = Σ_i log P(y_i | x, y_<i),
from the 2K best candidates (at most K of them are EOS, so K live ones remain). A candidate
ending in EOS finishes its hypothesis when it ranks above the K-th live one; finished
hypotheses leave the beam (as in Hugging Face's generate and fairseq) and are ranked by
    score(y) = log P(y | x) / lp(|y|),   the EOS counted in |y|, α = length_penalty:
    length_norm="power" ("hf"):  lp = |y|^α               (Hugging Face's generate)
    length_norm="gnmt":          lp = ((5 + |y|) / 6)^α   (Wu et al. 2016, eq. 14)
α = 0 ranks by log P alone (short outputs win); α > 0 favours longer ones. A hypothesis still
live at max_new_tokens finishes there. A source stops when K finished hypotheses all score at
least the best any live one could still reach (log P only falls, so live log P / max lp bounds
it): stopping then returns exactly what running to max_new_tokens would.
With K ≥ V^(L-1) no prefix of an output of up to L tokens is ever dropped, so the K returned
are the exhaustive top K; K = 1 with α = 0 is greedy decoding (tests/generation/test_beam.py
checks both, for both length penalties).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from deepatlas.generation.decode import check_prompts
from deepatlas.nn.attention import KVCache

Step = Callable[[Tensor, Optional[Tensor]], Tensor]
LENGTH_NORMS = ("power", "hf", "gnmt")


@dataclass
class Hypothesis:
    tokens: list[int]    # the new tokens (EOS included when it ended the hypothesis)
    logprob: float       # Σ_i log P(y_i | x, y_<i)
    score: float         # logprob / lp(len)


def length_penalty_of(length: int, alpha: float, length_norm: str = "power") -> float:
    """lp(|y|): "power"/"hf" |y|^α; "gnmt" ((5 + |y|) / 6)^α (Wu et al. 2016, eq. 14)."""
    if length_norm in ("power", "hf"):
        return length ** alpha
    if length_norm == "gnmt":
        return ((5 + length) / 6) ** alpha
    raise ValueError(f"unknown length_norm {length_norm!r}; valid: {', '.join(LENGTH_NORMS)}")


def length_normalised(logprob: float, length: int, alpha: float, length_norm: str = "power") -> float:
    """score(y) = log P(y | x) / lp(|y|)."""
    return logprob / length_penalty_of(length, alpha, length_norm)


def check_num_beams(num_beams: int) -> None:
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams={num_beams!r} must be an integer ≥ 1 (1 = greedy)")


def best_first(hyps: list[Hypothesis], k: int) -> list[Hypothesis]:
    return sorted(hyps, key=lambda h: -h.score)[:k]       # stable: ties keep the earlier-finished first


def make_step(forward: Callable[[Tensor, KVCache | None], Tensor], cache: KVCache | None) -> Step:
    """A Step from forward(new tokens (N, T), cache) -> logits (N, T, V).

    With a cache the first call feeds the whole prefix, later ones only the last token after
    reordering the cache so that each beam holds its parent's keys/values; without one every
    call recomputes the whole prefix (the plain path, equal token for token)."""
    def step(tokens: Tensor, parents: Tensor | None) -> Tensor:
        if cache is None:
            logits = forward(tokens, None)
        else:
            if parents is not None:
                cache.reorder(parents)                                # each beam keeps its parent's history
            logits = forward(tokens if parents is None else tokens[:, -1:], cache)
        return logits[:, -1].float().log_softmax(-1)                  # (N, V)
    return step


@torch.no_grad()
def beam_decode(step: Step, start: Tensor, num_beams: int, max_new_tokens: int,
                eos_id: int | None = None, length_penalty: float = 1.0,
                length_norm: str = "power") -> list[list[Hypothesis]]:
    """start (B, P): the first tokens of each source's output (a prompt, a BOS) -> for each
    source its best `num_beams` hypotheses (new tokens only), best first."""
    check_num_beams(num_beams)
    length_penalty_of(1, length_penalty, length_norm)                 # an unknown norm fails here
    (B, P), K, device = start.shape, num_beams, start.device
    tokens = start.repeat_interleave(K, 0)                            # (B·K, P + t)
    beam_lp = torch.full((B, K), float("-inf"), device=device)        # log P(y_1..t | x)
    beam_lp[:, 0] = 0.0                   # one live start per source; its copies would only repeat it
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]         # each source's best K, best first
    done = [False] * B
    parents = None
    for t in range(max_new_tokens):
        logp = step(tokens, parents).float()                          # (B·K, V)
        V = logp.size(-1)
        # log P(y_1..t+1 | x) = log P(y_1..t | x) + log P(y_t+1 | x, y_≤t)      (B, K·V)
        cand = (beam_lp.reshape(B * K, 1) + logp).reshape(B, K * V)
        top_lp, top = cand.topk(min(2 * K, K * V), dim=-1)            # (B, 2K), best first
        is_eos = top % V == eos_id if eos_id is not None else torch.zeros_like(top, dtype=torch.bool)
        n_live = (~is_eos).cumsum(-1)                                 # live candidates up to each rank
        live = ~is_eos & (n_live <= K)                                # the K best that do not end
        ends = is_eos & (n_live < K) & top_lp.isfinite()              # EOS above the K-th live one
        for b, j in ends.nonzero().tolist():
            if not done[b]:
                lp, row = top_lp[b, j].item(), b * K + top[b, j].item() // V
                ys = tokens[row, P:].tolist() + [eos_id]
                finished[b].append(Hypothesis(ys, lp, length_normalised(lp, len(ys), length_penalty,
                                                                        length_norm)))
        # the live ones, in rank order (a stable sort moves them to the front)        (B, K)
        pick = (~live).to(torch.uint8).sort(dim=-1, stable=True).indices[:, :K]
        beam_lp = top_lp.gather(1, pick).masked_fill(~live.gather(1, pick), float("-inf"))
        chosen = top.gather(1, pick)                                  # flat index k·V + token
        parents = (torch.arange(B, device=device)[:, None] * K + chosen // V).flatten()   # (B·K,)
        tokens = torch.cat([tokens[parents], (chosen % V).reshape(B * K, 1)], 1)
        # no live hypothesis can end above log P(y_1..t+1 | x) / max lp(n) over n in t+1..max_new_tokens
        # (log P ≤ 0 only falls; lp is monotone in n, so its max is at one end)
        most_lp = max(length_penalty_of(n, length_penalty, length_norm) for n in (t + 1, max_new_tokens))
        for b, best_live in enumerate(beam_lp[:, 0].tolist()):
            if not done[b]:
                finished[b] = best_first(finished[b], K)
                done[b] = best_live == float("-inf") or (
                    len(finished[b]) == K and finished[b][-1].score >= best_live / most_lp)
        if all(done):
            break
    else:                                 # still live at the length limit: they finish there
        for b in range(B):
            for row, lp in zip(tokens[b * K:(b + 1) * K, P:].tolist(), beam_lp[b].tolist()):
                if not done[b] and row and lp > float("-inf"):
                    finished[b].append(Hypothesis(row, lp, length_normalised(lp, len(row), length_penalty,
                                                                             length_norm)))
            finished[b] = best_first(finished[b], K)
    return finished


@torch.no_grad()
def beam_search(model: nn.Module, prompt: Sequence[int], num_beams: int, max_new_tokens: int,
                length_penalty: float = 1.0, eos_id: int | None = None, use_cache: bool = True,
                length_norm: str = "power") -> list[Hypothesis]:
    """A decoder-only LM (interface: see decode.py) continuing one prompt -> its best
    `num_beams` hypotheses, best first."""
    check_num_beams(num_beams)
    check_prompts(model, [prompt], max_new_tokens)
    model.eval()
    start = torch.tensor([list(prompt)], dtype=torch.long, device=next(model.parameters()).device)
    cache = model.new_cache(num_beams, len(prompt) + max_new_tokens) if use_cache else None
    step = make_step(lambda tokens, c: model(tokens, cache=c), cache)
    return beam_decode(step, start, num_beams, max_new_tokens, eos_id, length_penalty, length_norm)[0]
