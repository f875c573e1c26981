"""Sampling processors: exact answers on known distributions, and equal to HF's warpers."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepatlas.generation.processors import (apply_temperature, process_logits, repetition_penalty,
                                             top_k_filter, top_p_filter)


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.isfinite(logits).nonzero().flatten().tolist())


def test_top_p_keeps_smallest_set_on_known_distribution():
    logits = torch.tensor([0.30, 0.05, 0.40, 0.10, 0.15]).log()   # sorted: 2, 0, 4, 3, 1
    assert kept(top_p_filter(logits, 0.35)) == {2}                 # 0.40 ≥ 0.35 alone
    assert kept(top_p_filter(logits, 0.40 - 1e-4)) == {2}
    assert kept(top_p_filter(logits, 0.41)) == {2, 0}              # 0.70
    assert kept(top_p_filter(logits, 0.71)) == {2, 0, 4}           # 0.85
    assert kept(top_p_filter(logits, 0.86)) == {2, 0, 4, 3}        # 0.95
    assert kept(top_p_filter(logits, 0.96)) == {0, 1, 2, 3, 4}
    assert kept(top_p_filter(logits, 1.0)) == {0, 1, 2, 3, 4}
    # kept logits are unchanged, the rest are -inf
    out = top_p_filter(logits, 0.41)
    assert out[2] == logits[2] and out[0] == logits[0] and out[1] == float("-inf")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-6, 6), min_size=2, max_size=12), st.floats(0.01, 0.999))
def test_top_p_set_is_the_smallest_with_mass_at_least_p(raw, p):
    logits = torch.tensor(raw, dtype=torch.float64)
    probs = logits.softmax(-1)
    keep = sorted(kept(top_p_filter(logits, p)), key=lambda i: -probs[i].item())
    mass = probs[keep].sum().item()
    assert mass >= p - 1e-12
    # dropping the least likely kept token falls below p: no smaller set reaches p
    assert mass - probs[keep[-1]].item() < p + 1e-12
    # every kept token is at least as likely as every removed one
    removed = set(range(len(raw))) - set(keep)
    if removed:
        assert min(probs[keep]).item() >= max(probs[list(removed)]).item()


def test_top_k_keeps_k_largest_and_k1_is_argmax():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    out = top_k_filter(logits, 5)
    assert (torch.isfinite(out).sum(-1) == 5).all()
    assert torch.equal(out.topk(5).values, logits.topk(5).values)
    one = top_k_filter(logits, 1)
    assert torch.equal(torch.isfinite(one).float().argmax(-1), logits.argmax(-1))
    assert torch.equal(top_k_filter(logits, 999), logits)          # k > V keeps all


def test_processors_equal_hf_warpers():
    from transformers.generation.logits_process import (RepetitionPenaltyLogitsProcessor,
                                                        TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 40, generator=g) * 3
    ids = torch.randint(0, 40, (3, 7), generator=g)
    torch.testing.assert_close(top_p_filter(logits, 0.8), TopPLogitsWarper(0.8)(ids, logits.clone()))
    torch.testing.assert_close(top_k_filter(logits, 7), TopKLogitsWarper(7)(ids, logits.clone()))
    torch.testing.assert_close(apply_temperature(logits, 0.7),
                               TemperatureLogitsWarper(0.7)(ids, logits.clone()))
    torch.testing.assert_close(repetition_penalty(logits, ids, 1.3),
                               RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone()))


def test_repetition_penalty_divides_positive_multiplies_negative_and_skips_padding():
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0]])
    out = repetition_penalty(logits, torch.tensor([[0, 1, 3]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, -2.0]]
    # a masked (padding) occurrence of token 2 does not count
    out = repetition_penalty(logits, torch.tensor([[2, 0]]), 2.0, torch.tensor([[False, True]]))
    assert out.tolist() == [[1.0, -2.0, 1.0, -1.0]]


def test_processors_are_pure():
    logits = torch.randn(2, 10)
    before = logits.clone()
    process_logits(logits, 0.5, 3, 0.9, 1.5, torch.tensor([[1, 2], [3, 4]]))
    assert torch.equal(logits, before)


@pytest.mark.parametrize("kwargs, words", [
    ({"temperature": 0.0}, "greedy"), ({"temperature": -1.0}, "temperature"),
    ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "(0, 1]"),
    ({"penalty": 0.0}, "repetition_penalty"), ({"temperature": math.nan}, "temperature"),
])
def test_bad_settings_raise_clear_errors(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("]", r"\]")):
        process_logits(torch.zeros(1, 5), **kwargs)
