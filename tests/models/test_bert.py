"""BERT / ALBERT parity with Hugging Face (tiny configs, random weights, fp32, padded batches),
parameter counts from the formula, and the pre-training data rules (80/10/10, NSP 50/50)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from deepatlas.models.bert import (IGNORE, Bert, BertConfig, BertForPreTraining, from_hf_state_dict,
                                   param_count, pretraining_from_hf_state_dict)
from deepatlas.models.bert_tasks import (SequenceClassifier, SpanQA, TokenTagger, best_span, bio_spans,
                                         mask_tokens, masked_batch, nsp_pairs, pair_input)

transformers = pytest.importorskip("transformers")

TINY = BertConfig(vocab_size=57, hidden_size=32, n_layer=2, n_head=4, intermediate_size=64,
                  max_position=40, dropout=0.0)
TINY_ALBERT = dataclasses.replace(TINY, n_layer=3, embedding_size=16, share_layers=True, activation="gelu_tanh")


def randomise(hf, seed: int = 0):
    """HF zero-inits biases and sets LayerNorm to identity: randomise them too, so they are tested."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "norm" in name.lower():
                p.add_(torch.randn_like(p) * 0.1)
    return hf.eval()


def hf_model(cls, cfg: BertConfig, seed: int = 0, **extra):
    torch.manual_seed(seed)
    conf = (transformers.AlbertConfig if cfg.share_layers else transformers.BertConfig)(**cfg.to_hf(), **extra)
    return randomise(cls(conf), seed)


def batch(B: int = 3, T: int = 14, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, TINY.vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 9:], mask[2, 4:] = 0, 0                        # two padded rows
    ids[mask == 0] = 0
    types = torch.zeros_like(ids)
    types[:, 7:] = 1                                       # a second segment
    return ids, mask, types


def assert_real_close(ours, ref, mask, atol=1e-5):
    """Equal at the real tokens (padded positions' outputs are unused by every head)."""
    keep = mask.bool()
    torch.testing.assert_close(ours[keep], ref[keep], atol=atol, rtol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_bert_equals_hf_bertmodel_with_padding_and_segments(fast):
    hf = hf_model(transformers.BertModel, TINY)
    ours = from_hf_state_dict(hf.state_dict(), BertConfig.from_hf(hf.config))
    ours.config.fast = fast
    ids, mask, types = batch()
    ref = hf(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    out = ours(ids, mask, types, output_hidden_states=True)
    assert_real_close(out.last_hidden_state, ref.last_hidden_state, mask)
    torch.testing.assert_close(out.pooled, ref.pooler_output, atol=1e-5, rtol=1e-5)
    assert len(out.hidden_states) == len(ref.hidden_states) == TINY.n_layer + 1
    for a, b in zip(out.hidden_states, ref.hidden_states):
        assert_real_close(a, b, mask)


def test_gradients_equal_hf():
    hf = hf_model(transformers.BertModel, TINY, seed=3)
    ours = from_hf_state_dict(hf.state_dict(), TINY).train()  # dropout 0: train mode is deterministic
    ids, mask, types = batch(seed=4)
    w = torch.randn(TINY.hidden_size)
    (ours(ids, mask, types).pooled @ w).sum().backward()
    (hf(ids, attention_mask=mask, token_type_ids=types).pooler_output @ w).sum().backward()
    torch.testing.assert_close(ours.blocks[0].self_attn.q_proj.weight.grad,
                               hf.encoder.layer[0].attention.self.query.weight.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.embeddings.word.weight.grad, hf.embeddings.word_embeddings.weight.grad,
                               atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("hf_cls", ["BertForMaskedLM", "BertForPreTraining"])
def test_pretraining_heads_equal_hf(hf_cls):
    hf = hf_model(getattr(transformers, hf_cls), TINY, seed=5)
    ours = pretraining_from_hf_state_dict(hf.state_dict(), TINY)
    ids, mask, types = batch(seed=6)
    ref = hf(ids, attention_mask=mask, token_type_ids=types)
    mlm, nsp = ours(ids, mask, types)
    ref_mlm = ref.logits if hf_cls == "BertForMaskedLM" else ref.prediction_logits
    assert_real_close(mlm, ref_mlm, mask)
    assert ours.mlm.word is ours.bert.embeddings.word        # output tied to the input table
    labels = torch.full_like(ids, IGNORE)
    labels[0, 2], labels[1, 5], labels[2, 1] = 7, 11, 3
    if hf_cls == "BertForPreTraining":
        torch.testing.assert_close(nsp, ref.seq_relationship_logits, atol=1e-5, rtol=1e-5)
        nsl = torch.tensor([0, 1, 0])
        ref_loss = hf(ids, attention_mask=mask, token_type_ids=types, labels=labels, next_sentence_label=nsl).loss
        torch.testing.assert_close(ours.loss(ids, labels, mask, types, nsl), ref_loss, atol=1e-5, rtol=1e-5)
    else:
        assert nsp is None
        ref_loss = hf(ids, attention_mask=mask, token_type_ids=types, labels=labels).loss
        torch.testing.assert_close(ours.loss(ids, labels, mask, types), ref_loss, atol=1e-5, rtol=1e-5)


def test_albert_equals_hf_albertmodel_and_mlm():
    hf = hf_model(transformers.AlbertModel, TINY_ALBERT, seed=7)
    cfg = BertConfig.from_hf(hf.config)
    assert cfg.share_layers and cfg.embed_dim == 16 and cfg.activation == "gelu_tanh"
    ours = from_hf_state_dict(hf.state_dict(), cfg)
    ids, mask, types = batch(seed=8)
    ref = hf(ids, attention_mask=mask, token_type_ids=types)
    out = ours(ids, mask, types)
    assert_real_close(out.last_hidden_state, ref.last_hidden_state, mask)
    torch.testing.assert_close(out.pooled, ref.pooler_output, atol=1e-5, rtol=1e-5)
    hf_mlm = hf_model(transformers.AlbertForMaskedLM, TINY_ALBERT, seed=9)
    ours_mlm = pretraining_from_hf_state_dict(hf_mlm.state_dict(), cfg)
    assert_real_close(ours_mlm(ids, mask, types)[0], hf_mlm(ids, attention_mask=mask, token_type_ids=types).logits, mask)


@pytest.mark.parametrize("cfg", [TINY, TINY_ALBERT, dataclasses.replace(TINY_ALBERT, share_layers=False)],
                         ids=["bert", "albert", "factorised-only"])
def test_param_count_formula_equals_ours_and_hf(cfg):
    ours = Bert(cfg).num_params()
    assert ours == param_count(cfg)
    if cfg.share_layers or cfg.embed_dim == cfg.hidden_size:
        hf = (transformers.AlbertModel if cfg.share_layers else transformers.BertModel)(
            (transformers.AlbertConfig if cfg.share_layers else transformers.BertConfig)(**cfg.to_hf()))
        assert ours == sum(p.numel() for p in hf.parameters())


def test_albert_saves_what_the_formula_says_at_bert_base_size():
    base = BertConfig()                                    # BERT-base: 110M (Devlin et al. 2019)
    albert = dataclasses.replace(base, embedding_size=128, share_layers=True)
    assert 108e6 < param_count(base) < 111e6
    assert 11e6 < param_count(albert) < 13e6               # ALBERT-base: 12M (Lan et al. 2020, Table 1)


@pytest.mark.parametrize("head", ["classification", "qa", "tagging"])
def test_finetuning_heads_equal_hf(head):
    cls = {"classification": transformers.BertForSequenceClassification,
           "qa": transformers.BertForQuestionAnswering, "tagging": transformers.BertForTokenClassification}[head]
    hf = hf_model(cls, TINY, seed=10, num_labels=2 if head == "qa" else 3)
    sd = hf.state_dict()
    enc = from_hf_state_dict(sd, TINY)
    ours = {"classification": lambda: SequenceClassifier(enc, 3), "qa": lambda: SpanQA(enc),
            "tagging": lambda: TokenTagger(enc, 3)}[head]().eval()
    ours.load_state_dict({k: v for k, v in sd.items() if not k.startswith("bert.")}, strict=False)
    ids, mask, types = batch(seed=11)
    ref = hf(ids, attention_mask=mask, token_type_ids=types)
    out = ours(ids, mask, types)
    if head == "classification":
        torch.testing.assert_close(out, ref.logits, atol=1e-5, rtol=1e-5)
    elif head == "qa":
        assert_real_close(out[0], ref.start_logits, mask)
        assert_real_close(out[1], ref.end_logits, mask)
    else:
        assert_real_close(out, ref.logits, mask)


def test_mask_tokens_follows_80_10_10_on_many_draws():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (200, 500), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True                  # [CLS], [SEP]
    inputs, labels = mask_tokens(ids, mask_id=4, vocab_size=1000, special=special, generator=g)
    chosen = labels != IGNORE
    n = int(chosen.sum())
    assert abs(n / int((~special).sum()) - 0.15) < 0.003   # 100k positions: σ ≈ 0.001
    assert not chosen[special].any()
    assert torch.equal(labels[chosen], ids[chosen])
    masked = (inputs == 4) & chosen
    unchanged = (inputs == ids) & chosen
    assert abs(int(masked.sum()) / n - 0.8) < 0.01
    assert abs(int(unchanged.sum()) / n - (0.1 + 0.1 / 1000)) < 0.01  # random hits the same id 1/V of the time
    assert abs(1 - (int(masked.sum()) + int(unchanged.sum())) / n - 0.1) < 0.01
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_dynamic_masking_changes_per_step_static_does_not():
    ids = torch.randint(5, 100, (4, 64), generator=torch.Generator().manual_seed(1))
    a = masked_batch(ids, step=0, seed=3, mask_id=4, vocab_size=100)
    b = masked_batch(ids, step=1, seed=3, mask_id=4, vocab_size=100)
    again = masked_batch(ids, step=1, seed=3, mask_id=4, vocab_size=100)
    assert not torch.equal(a[1], b[1]) and torch.equal(b[1], again[1])   # new each step, reproducible
    s0 = masked_batch(ids, step=0, seed=3, mask_id=4, vocab_size=100, dynamic=False)
    s9 = masked_batch(ids, step=9, seed=3, mask_id=4, vocab_size=100, dynamic=False)
    assert torch.equal(s0[0], s9[0]) and torch.equal(s0[1], s9[1])


def test_nsp_pairs_are_half_next_half_random():
    segments = [[i] for i in range(300)]
    docs = [i // 30 for i in range(300)]                   # 10 documents of 30 segments
    pairs = nsp_pairs(segments, 4000, torch.Generator().manual_seed(0), docs)
    next_share = sum(lab == 0 for *_, lab in pairs) / len(pairs)
    assert abs(next_share - 0.5) < 0.025
    for a, b, lab in pairs:
        assert (b == a + 1 and docs[a] == docs[b]) if lab == 0 else docs[a] != docs[b]
    ids, types = pair_input([7, 8], [9], cls_id=2, sep_id=3)
    assert ids == [2, 7, 8, 3, 9, 3] and types == [0, 0, 0, 0, 1, 1]


def test_best_span_equals_brute_force():
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        s, e = torch.randn(12, generator=g), torch.randn(12, generator=g)
        allowed = torch.ones(12, dtype=torch.bool)
        allowed[:3] = False                                # the question's tokens
        brute = max(((float(s[i] + e[j]), i, j) for i in range(3, 12) for j in range(i, min(12, i + 4))))
        i, j, score = best_span(s, e, max_len=4, allowed=allowed)
        assert (i, j) == brute[1:] and abs(score - brute[0]) < 1e-6


def test_bio_spans():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-PER", "O", "I-ORG"]
    assert bio_spans(tags) == [("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 5), ("PER", 6, 6), ("ORG", 8, 8)]
    with pytest.raises(ValueError, match="not O, B-TYPE or I-TYPE"):
        bio_spans(["X"])


def test_bad_inputs_have_clear_errors():
    model = BertForPreTraining(TINY, nsp=False)
    with pytest.raises(ValueError, match="exceed the model's 40 positions"):
        model.bert(torch.zeros(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match="no NSP head"):
        model.loss(torch.ones(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long),
                   next_sentence_label=torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="missing"):
        from_hf_state_dict({"embeddings.word_embeddings.weight": torch.zeros(57, 32)}, TINY)


def test_mean_pooled_classifier_and_single_document_nsp():
    torch.manual_seed(12)
    enc = Bert(TINY).eval()
    clf = SequenceClassifier(enc, 4, pooling="mean").eval()
    ids, mask, types = batch(seed=13)
    h = enc(ids, mask, types).last_hidden_state
    m = mask[:, :, None].float()
    want = clf.classifier((h * m).sum(1) / m.sum(1))          # the mean over real tokens only
    torch.testing.assert_close(clf(ids, mask, types), want, atol=1e-6, rtol=1e-5)
    pairs = nsp_pairs([[i] for i in range(50)], 500, torch.Generator().manual_seed(1))
    assert all(b == a + 1 if lab == 0 else b not in (a, a + 1) for a, b, lab in pairs)
