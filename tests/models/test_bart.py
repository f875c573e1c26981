"""BART equals HF's BartForConditionalGeneration; text infilling and sentence permutation statistics."""
import pytest
import torch

from deepatlas.models.bart import (SENTENCE_END, config_from_hf, from_hf_state_dict, permute_sentences,
                                   poisson_span_lengths, text_infill)


@pytest.mark.parametrize("scale", [False, True])
def test_bart_logits_and_loss_equal_hf(scale):
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2,
                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
                     decoder_ffn_dim=48, max_position_embeddings=64, scale_embedding=scale,
                     dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    hf = BartForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        hf.final_logits_bias.normal_()                        # nonzero, so the bias is checked
    ours = from_hf_state_dict(hf.state_dict(), config_from_hf(hf.config)).eval()
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(3, 100, (2, 40), generator=g), torch.randint(3, 100, (2, 33), generator=g)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[0, 30:] = False
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=mask.long(), decoder_input_ids=tgt).logits
        torch.testing.assert_close(ours(src, tgt, mask), ref, atol=1e-5, rtol=1e-5)
        labels = tgt.clone()
        labels[1, -4:] = -100
        ref_loss = hf(input_ids=src, attention_mask=mask.long(), labels=labels).loss
        torch.testing.assert_close(ours.loss(src, labels, mask), ref_loss, atol=1e-5, rtol=1e-5)


def test_poisson_span_lengths_have_mean_and_variance_3():
    g = torch.Generator().manual_seed(0)
    draws = [ell for _ in range(40) for ell in poisson_span_lengths(100_000, 3.0, g)[:-1]]
    t = torch.tensor(draws, dtype=torch.float64)
    assert t.mean().item() == pytest.approx(3.0, abs=0.03)
    assert t.var().item() == pytest.approx(3.0, abs=0.1)       # Poisson: variance = mean
    assert (t == 0).float().mean().item() == pytest.approx(torch.exp(torch.tensor(-3.0)).item(), abs=0.005)


def test_text_infill_masks_30_percent_with_one_mask_per_span():
    g = torch.Generator().manual_seed(1)
    ids = list(range(10, 510))                                 # 500 distinct tokens
    n_masked, n_spans, n_masks = 0, 0, 0
    for _ in range(50):
        out, spans = text_infill(ids, mask_id=1, generator=g)
        assert sum(ell for _, ell in spans) == 150              # round(0.3 · 500)
        assert out.count(1) == len(spans)                       # one <mask> per span, 0-length too
        assert len(out) == 500 - 150 + len(spans)
        kept = [t for t in out if t != 1]
        assert kept == sorted(kept) and len(set(kept)) == 350   # order kept, nothing duplicated
        for (s, ell) in spans:                                  # the masked tokens are gone
            assert not set(ids[s:s + ell]) & set(kept)
        n_masked += 150
        n_spans += len(spans)
        n_masks += out.count(1)
    assert 2.6 < n_masked / n_spans < 3.4                       # mean span length ≈ λ


def test_permute_sentences_keeps_the_sentences():
    text = "Emma was handsome. She was clever! Was she rich? Yes. Very."
    g = torch.Generator().manual_seed(0)
    outs = {permute_sentences(text, g) for _ in range(20)}
    assert len(outs) > 3
    for out in outs:
        assert sorted(SENTENCE_END.split(out)) == sorted(SENTENCE_END.split(text))
