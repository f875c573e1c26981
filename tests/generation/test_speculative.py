"""Speculative decoding emits exactly the target's greedy tokens, whatever the draft."""
from __future__ import annotations

import copy

import pytest

from deepatlas.generation.fast_decode import FastLlama, greedy
from deepatlas.generation.speculative import DraftModel, PromptLookup, speculative_greedy
from deepatlas.quant.linear import compact_model
from tests.generation.test_fast_decode import tiny


def test_prompt_lookup_proposes_what_followed_the_last_ngram():
    look = PromptLookup(max_ngram=3)
    assert look.propose([1, 2, 3, 4, 5, 9, 2, 3], 2) == [4, 5]
    assert look.propose([7, 8, 9], 3) == []
    assert look.propose([5, 6, 5], 4) == [6, 5]


@pytest.mark.parametrize("k", [1, 3, 6])
def test_equal_to_greedy_with_prompt_lookup_and_draft_models(k):
    target_model = tiny(6)
    prompt = [3, 4, 5, 6, 7, 3, 4, 5, 6, 7, 3, 4]
    want = greedy(FastLlama(target_model, max_len=96), prompt, 40)
    drafts = {"lookup": PromptLookup(),
              "int4 copy": DraftModel(FastLlama(compact_model(copy.deepcopy(target_model), "int4"), max_len=96)),
              "unrelated": DraftModel(FastLlama(tiny(7), max_len=96))}
    for name, drafter in drafts.items():
        got, stats = speculative_greedy(FastLlama(target_model, max_len=96), drafter, prompt, 40, k=k)
        assert got == want, name
        assert stats.passes < 40 or stats.accepted == 0
    _, copy_stats = speculative_greedy(FastLlama(target_model, max_len=96), drafts["int4 copy"], prompt, 40, k=k)
    assert copy_stats.acceptance > 0.5 and copy_stats.passes < 40   # the int4 copy mostly agrees


def test_stop_and_limits():
    m = tiny(8)
    want = greedy(FastLlama(m, max_len=64), [1, 2, 3], 20)
    got, _ = speculative_greedy(FastLlama(m, max_len=64), PromptLookup(), [1, 2, 3], 20, stop_ids=[want[5]])
    assert got == want[:want.index(want[5]) + 1]
    with pytest.raises(ValueError, match="k=0"):
        speculative_greedy(FastLlama(m, max_len=64), PromptLookup(), [1], 5, k=0)
