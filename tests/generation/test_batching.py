"""Continuous batching: requests joining and leaving a running batch get the tokens they would alone."""
from __future__ import annotations

import pytest
import torch

from deepatlas.generation.batching import ContinuousBatcher, Request, generate_batched
from deepatlas.generation.decode import generate
from deepatlas.generation.fast_decode import FastLlama
from tests.generation.test_fast_decode import tiny


def test_staggered_requests_equal_decoding_alone():
    m = tiny(4)
    b = ContinuousBatcher(FastLlama(m, n_slots=3, max_len=64))
    prompts = [[1, 2, 3], [7, 8], [20, 21, 22, 23], [5], [9, 9, 9]]
    lengths = [12, 3, 7, 10, 5]
    reqs = [b.submit(Request(prompts[i], lengths[i])) for i in range(2)]
    for _ in range(2):
        b.step()
    reqs += [b.submit(Request(prompts[i], lengths[i])) for i in range(2, 5)]   # more than free slots
    while b.step():
        assert len(b.active) <= 3
    for req, p, n in zip(reqs, prompts, lengths):
        assert req.tokens == generate(m, [p], n)[0]
    assert max(b.batch_sizes) == 3 and b.finished == {"length": 5}


def test_stop_ids_cancel_and_seeded_sampling():
    m = tiny(5)
    b = ContinuousBatcher(FastLlama(m, n_slots=2, max_len=64))
    first = generate(m, [[1, 2]], 6)[0]
    stop = b.submit(Request([1, 2], 50, stop_ids=[first[3]]))
    gone = b.submit(Request([3, 4], 50))
    b.step()
    b.cancel(gone)
    while b.step():
        pass
    assert stop.tokens == first[:first.index(first[3]) + 1]
    assert len(gone.tokens) < 50 and b.finished["cancelled"] == 1 and not b.active
    kw = dict(temperature=1.0, top_p=0.9, seed=3)
    one, two = generate_batched(b, [[1, 2, 3]] * 2, 10, **kw)
    assert one == two                                           # same seed, same tokens, batched together
    assert generate_batched(b, [[1, 2, 3]], 10, **{**kw, "seed": 4})[0] != one


def test_bad_requests_are_refused():
    b = ContinuousBatcher(FastLlama(tiny(), n_slots=1, max_len=16))
    with pytest.raises(ValueError, match="context of 16"):
        b.submit(Request([1] * 10, 7))
    with pytest.raises(ValueError, match="empty"):
        b.submit(Request([], 3))
    with pytest.raises(ValueError, match="top_p"):
        b.submit(Request([1], 3, temperature=1.0, top_p=1.5))


def test_decode_throughput_times_the_steps_after_the_prefills():
    from deepatlas.generation.batching import decode_throughput

    b = ContinuousBatcher(FastLlama(tiny(), n_slots=4, max_len=32))
    assert decode_throughput(b, [[1, 2], [3], [4, 5, 6]], 5) > 0
    assert not b.active and b.finished == {"length": 3} and b.batch_sizes == [3] * 4
    with pytest.raises(ValueError, match="max_tokens=1"):
        decode_throughput(b, [[1]], 1)
