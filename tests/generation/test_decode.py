"""Decoding: cache = no cache exactly, batching = one by one, top-k=1 = greedy, equal to HF."""
from __future__ import annotations

import copy

import pytest
import torch

from deepatlas.generation.decode import SamplingSettings, generate, stream
from deepatlas.models.gpt import GPT, GPTConfig

CFG = GPTConfig(vocab_size=50, block_size=48, n_layer=2, n_head=2, n_embd=32)
PROMPTS = [[1, 2, 3, 4, 5, 6, 7], [9], [4, 4, 8, 15]]


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    m = GPT(CFG).eval()
    with torch.no_grad():  # larger weights: peaked, varied distributions (not near-uniform)
        for p in m.parameters():
            p.mul_(8.0) if p.dim() > 1 else None
    return m


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: the GPU run of this check (its CUDA generator)"))])
def test_cached_equals_uncached_greedy_and_sampled(model, device):
    on_device = copy.deepcopy(model).to(device)
    for settings in (SamplingSettings(), SamplingSettings(greedy=False, temperature=0.9, top_k=20,
                                                          top_p=0.95, repetition_penalty=1.2)):
        a = generate(on_device, PROMPTS, 20, settings, use_cache=True, seed=3)
        b = generate(on_device, PROMPTS, 20, settings, use_cache=False, seed=3)
        assert torch.equal(torch.tensor(a), torch.tensor(b))


def test_batched_left_padded_equals_one_by_one(model):
    s = SamplingSettings(greedy=False, temperature=1.0)
    batched = generate(model, PROMPTS, 15)
    alone = [generate(model, [p], 15)[0] for p in PROMPTS]
    assert batched == alone
    # sampling draws from one generator for the whole batch: the same seed gives the same text
    assert generate(model, PROMPTS, 5, s, seed=1) == generate(model, PROMPTS, 5, s, seed=1)


def test_top_k_1_equals_greedy_and_greedy_equals_hf(model):
    greedy = generate(model, PROMPTS, 12)
    assert generate(model, PROMPTS, 12, SamplingSettings(greedy=False, top_k=1), seed=0) == greedy
    transformers = pytest.importorskip("transformers")
    from deepatlas.models.gpt import config_to_hf, to_hf_state_dict
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config_to_hf(CFG))).eval()
    hf.load_state_dict(to_hf_state_dict(model), strict=False)
    for p, ours in zip(PROMPTS, greedy):
        ref = hf.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False, pad_token_id=0,
                          eos_token_id=None)
        assert ref[0, len(p):].tolist() == ours


def test_stop_ids_stop_strings_and_streaming(model):
    full = generate(model, [PROMPTS[0]], 20)[0]
    stop = full[5]
    first = full.index(stop)
    assert generate(model, [PROMPTS[0]], 20, stop_ids=[stop])[0] == full[:first + 1]
    text = lambda ids: "".join(chr(97 + i % 26) for i in ids)  # noqa: E731 - toy detokenizer
    target = text(full[3:5])
    cut = generate(model, [PROMPTS[0]], 20, stop_strings=[target], decode=text)[0]
    assert target in text(cut) and target not in text(cut[:-1])
    seen = []
    assert list(stream(model, PROMPTS[0], 20)) == full
    generate(model, PROMPTS, 4, on_token=lambda row, t: seen.append((row, t)))
    assert len(seen) == 12 and [r for r, _ in seen[:3]] == [0, 1, 2]


@pytest.mark.parametrize("prompts, n, settings, words", [
    ([], 5, None, "no prompts"),
    ([[1, 2], []], 5, None, "prompt 1 is empty"),
    ([[1, 50]], 5, None, "unknown token id 50"),
    ([[-1]], 5, None, "unknown token id -1"),
    ([list(range(49))], 0, None, "context length 48"),
    ([[1] * 40], 10, None, "at most 8 new tokens"),
    ([[1]], 5, SamplingSettings(greedy=False, temperature=0.0), "use greedy"),
    ([[1]], 5, SamplingSettings(greedy=False, top_p=1.2), "top_p"),
    ([[1]], 5, SamplingSettings(greedy=False, top_k=0), "top_k"),
])
def test_bad_input_raises_clear_error(model, prompts, n, settings, words):
    with pytest.raises(ValueError, match=words):
        generate(model, prompts, n, settings)
