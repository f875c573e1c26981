"""T5 equals HF's T5ForConditionalGeneration (v1.1 and v1.0); span corruption's rates and spans."""
import pytest
import torch

from deepatlas.models.t5 import (config_from_hf, from_hf_state_dict, random_spans_mask,
                                 sentinel_id, span_corrupt, uncorrupt)


def _hf_t5(gated: bool, tie: bool):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=120, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3,
                   num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=20,
                   feed_forward_proj="gated-gelu" if gated else "relu", tie_word_embeddings=tie,
                   dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0)
    return T5ForConditionalGeneration(cfg).eval()


@pytest.mark.parametrize("gated,tie", [(True, False), (False, True)])
def test_t5_logits_equal_hf(gated, tie):
    hf = _hf_t5(gated, tie)
    ours = from_hf_state_dict(hf.state_dict(), config_from_hf(hf.config)).eval()
    g = torch.Generator().manual_seed(1)
    src = torch.randint(1, 120, (2, 30), generator=g)       # 30 > max_distance: the log buckets
    tgt = torch.randint(1, 120, (2, 25), generator=g)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 22:] = False                                     # a padded source row
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=mask.long(), decoder_input_ids=tgt).logits
        got = ours(src, tgt, attention_mask=mask)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    labels = tgt.clone()
    labels[0, -3:] = -100
    with torch.no_grad():
        ref_loss = hf(input_ids=src, attention_mask=mask.long(), labels=labels).loss
    torch.testing.assert_close(ours.loss(src, labels, mask), ref_loss, atol=1e-5, rtol=1e-5)


def test_random_spans_rate_and_mean_length():
    g = torch.Generator().manual_seed(0)
    lengths, n_noise = [], 0
    for _ in range(300):
        m = random_spans_mask(200, 0.15, 3.0, g)
        n_noise += int(m.sum())
        assert int(m.sum()) == 30 and not m[0]                # round(0.15·200), starts with a kept run
        starts = (m[1:] & ~m[:-1]).nonzero().flatten() + 1
        ends = (~m[1:] & m[:-1]).nonzero().flatten() + 1
        ends = torch.cat([ends, torch.tensor([200])]) if m[-1] else ends
        lengths += (ends - starts).tolist()
        assert len(starts) == 10                               # round(30 / 3) spans
    assert sum(lengths) / len(lengths) == pytest.approx(3.0)
    assert max(lengths) > 5                                   # random lengths, not all 3


def test_span_corrupt_sentinels_and_roundtrip():
    g = torch.Generator().manual_seed(3)
    ids = list(range(1, 101))
    inputs, targets = span_corrupt(ids, vocab_size=300, generator=g, eos_id=None)
    n_spans = sum(1 for t in inputs if t >= 200)
    assert n_spans == 5 and targets[-1] == sentinel_id(5, 300)
    assert len(inputs) == 100 - 15 + 5 and len(targets) == 15 + 6
    assert uncorrupt(inputs, targets, 300) == ids
    assert [t for t in inputs if t >= 200] == [299, 298, 297, 296, 295]


def test_greedy_equals_hf_generate():
    hf = _hf_t5(True, False)
    ours = from_hf_state_dict(hf.state_dict(), config_from_hf(hf.config)).eval()
    src = torch.randint(2, 120, (2, 12), generator=torch.Generator().manual_seed(5))
    ref = hf.generate(src, max_new_tokens=8, do_sample=False, num_beams=1, min_new_tokens=8,
                      use_cache=False)[:, 1:]
    torch.testing.assert_close(ours.greedy(src, 8), ref)
