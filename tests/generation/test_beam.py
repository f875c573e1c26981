"""Beam search: exhaustive optimum on a tiny vocabulary (both length penalties), width 1 =
greedy, cache = no cache, a batch of sources = each source alone."""
from __future__ import annotations

import itertools

import pytest
import torch

from deepatlas.generation.beam import beam_decode, beam_search, length_normalised
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


def all_outputs(eos: int | None, vocab: int = V, max_len: int = L) -> list[list[int]]:
    """Every output of up to max_len tokens that ends at its first EOS (or at length max_len)."""
    outs = []
    for n in range(1, max_len + 1):
        for ys in itertools.product(range(vocab), repeat=n):
            ys = list(ys)
            body = ys if eos is None else ys[:-1]
            if eos is not None and eos in body:
                continue
            if eos is None and n < max_len:
                continue
            if eos is not None and n < max_len and ys[-1] != eos:
                continue
            outs.append(ys)
    return outs


@pytest.mark.parametrize("length_norm", ["power", "gnmt"])
@pytest.mark.parametrize("eos, alpha", [(None, 1.0), (EOS, 0.0), (EOS, 1.0), (EOS, 2.0)])
def test_beam_equals_exhaustive_search(model, eos, alpha, length_norm):
    lps = prefix_logprobs(model)
    scored = sorted(((length_normalised(lps[tuple(ys)], len(ys), alpha, length_norm), ys)
                     for ys in all_outputs(eos)), reverse=True)
    beams = beam_search(model, PROMPT, num_beams=V ** (L - 1), max_new_tokens=L,
                        length_penalty=alpha, eos_id=eos, length_norm=length_norm)
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
    with pytest.raises(ValueError, match="length_norm"):
        beam_search(model, PROMPT, 2, 4, length_norm="gmnt")


# ---- beam_decode on a next-token function over a batch of sources ---------------------------

def table_step(vocab: int, K: int, seed: int = 0):
    """A fixed random next-token distribution for every (source, prefix): a stand-in model.
    Row i decodes source i // K; no cache, so `parents` is not needed."""
    def step(tokens: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
        rows = []
        for i, prefix in enumerate(tokens.tolist()):
            g = torch.Generator().manual_seed(hash((seed, i // K, *prefix)) % (2 ** 31))
            rows.append((torch.randn(vocab, generator=g) * 2).log_softmax(-1))
        return torch.stack(rows)
    return step


def greedy_loop(step, B: int, bos: int, eos: int, max_len: int) -> list[list[int]]:
    """The plain argmax loop, one source at a time: x_{t+1} = argmax P(x | x_≤t) until EOS."""
    outs = []
    for b in range(B):
        ys = []
        for _ in range(max_len):
            prefix = torch.tensor([[bos, *ys]]).expand(b + 1, -1)      # row b (K = 1) is source b
            ys.append(step(prefix, None)[b].argmax().item())
            if ys[-1] == eos:
                break
        outs.append(ys)
    return outs


@pytest.mark.parametrize("length_norm", ["gnmt", "power"])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_batched_beam_with_room_for_everything_equals_exhaustive_search(alpha, length_norm):
    vocab, eos, max_len, B = 3, 2, 4, 2
    K = vocab ** max_len  # every hypothesis fits in the beam
    start = torch.zeros(B, 1, dtype=torch.long)                       # BOS = 0
    beams = beam_decode(table_step(vocab, K), start, K, max_len, eos, alpha, length_norm)
    one = table_step(vocab, 1)
    for b in range(B):
        def logp(ys: list[int]) -> float:
            return sum(one(torch.tensor([[0, *ys[:t]]]).expand(b + 1, -1), None)[b, ys[t]].item()
                       for t in range(len(ys)))
        best_score, best = max((length_normalised(logp(ys), len(ys), alpha, length_norm), ys)
                               for ys in all_outputs(eos, vocab, max_len))
        assert beams[b][0].tokens == best
        assert beams[b][0].score == pytest.approx(best_score, abs=1e-4)


def test_beam_of_one_equals_greedy_and_wider_beams_score_at_least_as_well():
    vocab, eos, B, T = 6, 1, 5, 6
    start = torch.zeros(B, 1, dtype=torch.long)
    greedy = greedy_loop(table_step(vocab, 1, seed=3), B, 0, eos, T)
    beam1 = beam_decode(table_step(vocab, 1, seed=3), start, 1, T, eos, length_penalty=0.0)
    assert [h[0].tokens for h in beam1] == greedy
    beam4 = beam_decode(table_step(vocab, 4, seed=3), start, 4, T, eos, length_penalty=0.0)
    s1, s4 = [h[0].score for h in beam1], [h[0].score for h in beam4]
    assert all(b >= a - 1e-6 for a, b in zip(s1, s4))
    assert any(b > a + 1e-6 for a, b in zip(s1, s4))  # on this table the beam finds better outputs


def test_a_batch_of_sources_equals_each_source_alone():
    vocab, eos, B, K = 5, 4, 4, 3
    start = torch.zeros(B, 1, dtype=torch.long)
    together = beam_decode(table_step(vocab, K, seed=7), start, K, 6, eos, 0.6, "gnmt")

    def alone(b: int):   # source b of the table, decoded in a batch of one
        step = table_step(vocab, K, seed=7)
        return lambda tokens, parents: step(tokens.repeat(B, 1), None)[b * K:(b + 1) * K]

    for b in range(B):
        single = beam_decode(alone(b), start[:1], K, 6, eos, 0.6, "gnmt")[0]
        assert [(h.tokens, h.score) for h in together[b]] == [(h.tokens, h.score) for h in single]
