"""Beam search: exhaustive optimum on a tiny vocabulary, width 1 = greedy, cache = no cache."""
from __future__ import annotations

import itertools

import pytest
import torch

from deepatlas.generation.beam import beam_search, length_normalised
from deepatlas.generation.decode import generate
from deepatlas.models.gpt import GPT, GPTConfig

V, L, EOS = 4, 4, 3
PROMPT = [0, 2, 1]


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(1)
    m = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(6.0) if p.dim() > 1 else None
    return m


@torch.no_grad()
def prefix_logprobs(model: GPT) -> dict[tuple[int, ...], float]:
    """log P(ys | PROMPT) of every ys of 1..L tokens, from one forward pass over all V^L rows."""
    rows = torch.tensor(list(itertools.product(range(V), repeat=L)))            # (V^L, L)
    x = torch.cat([torch.tensor(PROMPT).expand(len(rows), -1), rows], 1)
    lp = model(x)[:, len(PROMPT) - 1:-1].log_softmax(-1)                       # (V^L, L, V)
    cum = lp.gather(-1, rows[..., None]).squeeze(-1).cumsum(1)                  # (V^L, L)
    return {tuple(r[:n].tolist()): cum[i, n - 1].item()
            for i, r in enumerate(rows) for n in range(1, L + 1)}


def all_outputs(eos: int | None) -> list[list[int]]:
    """Every output of up to L tokens that ends at its first EOS (or at length L)."""
    outs = []
    for n in range(1, L + 1):
        for ys in itertools.product(range(V), repeat=n):
            ys = list(ys)
            body = ys if eos is None else ys[:-1]
            if eos is not None and eos in body:
                continue
            if eos is None and n < L:
                continue
            if eos is not None and n < L and ys[-1] != eos:
                continue
            outs.append(ys)
    return outs


@pytest.mark.parametrize("eos, alpha", [(None, 1.0), (EOS, 0.0), (EOS, 1.0), (EOS, 2.0)])
def test_beam_equals_exhaustive_search(model, eos, alpha):
    lps = prefix_logprobs(model)
    scored = sorted(((length_normalised(lps[tuple(ys)], len(ys), alpha), ys)
                     for ys in all_outputs(eos)), reverse=True)
    beams = beam_search(model, PROMPT, num_beams=V ** (L - 1), max_new_tokens=L,
                        length_penalty=alpha, eos_id=eos)
    best_score, best = scored[0]
    assert beams[0].tokens == best
    assert beams[0].score == pytest.approx(best_score, abs=1e-4)
    # the whole top-5 list agrees, scores included
    assert [b.tokens for b in beams[:5]] == [ys for _, ys in scored[:5]]


def test_length_penalty_changes_the_winner_in_the_stated_direction(model):
    short = beam_search(model, PROMPT, 16, L, length_penalty=0.0, eos_id=EOS)[0]
    long = beam_search(model, PROMPT, 16, L, length_penalty=3.0, eos_id=EOS)[0]
    assert short.tokens == [EOS] and len(long.tokens) > len(short.tokens)


def test_width_one_is_greedy_and_cache_equals_no_cache(model):
    greedy = generate(model, [PROMPT], L)[0]
    assert beam_search(model, PROMPT, 1, L)[0].tokens == greedy
    a = beam_search(model, PROMPT, 5, 8, eos_id=EOS, use_cache=True)
    b = beam_search(model, PROMPT, 5, 8, eos_id=EOS, use_cache=False)
    assert [h.tokens for h in a] == [h.tokens for h in b]
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(model, PROMPT, 0, 4)
