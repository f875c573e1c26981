"""Real weights: all-MiniLM-L6-v2 in our Bert through our WordPiece equals transformers, and its
mean-pooled, normalised embeddings equal what sentence-transformers computes (its Pooling +
Normalize modules, written out here from the package's 1_Pooling/config.json and modules.json)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from deepatlas.models.sentence_encoder import cosine_matrix, load_minilm, mean_pool, minilm_dir

transformers = pytest.importorskip("transformers")

TEXTS = ["A man is eating food.", "It is a truth universally acknowledged, that a single man in "
         "possession of a good fortune, must be in want of a wife.", "Café naïve — “quoted” [MASK] ½ 東京!",
         "Emma Woodhouse, handsome, clever, and rich", "x", "so " * 400]


@pytest.fixture(scope="module")
def minilm():
    try:
        folder = minilm_dir()
    except FileNotFoundError as err:
        pytest.skip(f"all-MiniLM-L6-v2 not installed: {err}")
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    ref = transformers.AutoModel.from_pretrained(str(folder)).eval()
    return load_minilm(), ref_tok, ref, folder


def reference_embeddings(ref_tok, ref, folder, texts):
    """sentence-transformers' pipeline: Transformer(max_seq_length) -> Pooling -> Normalize."""
    max_len = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    b = ref_tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        h = ref(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    u = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return F.normalize(u, p=2, dim=1), b, h


def test_ids_hidden_states_and_embeddings_equal_transformers(minilm):
    enc, ref_tok, ref, folder = minilm
    expected, b, h_ref = reference_embeddings(ref_tok, ref, folder, TEXTS)
    ids, mask = enc.batch(TEXTS)
    assert torch.equal(ids, b["input_ids"]) and torch.equal(mask, b["attention_mask"])
    assert ids.size(1) == 256                              # the 400-word text is cut to max_seq_length
    with torch.no_grad():
        h = enc.model(ids, mask).last_hidden_state
    keep = mask.bool()
    torch.testing.assert_close(h[keep], h_ref[keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(enc.encode(TEXTS, batch_size=4), expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(enc.encode(TEXTS).norm(dim=1), torch.ones(len(TEXTS)), atol=1e-6)


def test_batching_and_order_do_not_change_embeddings(minilm):
    enc = minilm[0]
    together = enc.encode(TEXTS[:4], batch_size=3)
    alone = torch.cat([enc.encode(t) for t in TEXTS[:4]])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    assert enc.encode([]).shape == (0, 384)


def test_bf16_embeddings_stay_within_cosine_1e_4_of_fp32(minilm):
    enc = minilm[0]
    fp32, bf16 = enc.encode(TEXTS), enc.encode(TEXTS, bf16=True)
    assert bf16.dtype == torch.float32 and torch.allclose(bf16.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-6)
    assert (fp32 * bf16).sum(dim=1).min() > 0.9999
    assert not torch.equal(fp32, bf16)          # it did run in bf16


def test_paraphrases_score_above_unrelated_pairs(minilm):
    enc = minilm[0]
    pairs = [("A man is eating food.", "A man is eating a piece of bread."),
             ("She refused his offer of marriage.", "She turned down his proposal."),
             ("The weather was cold and wet.", "It was a rainy, chilly day.")]
    e = enc.encode([t for p in pairs for t in p])
    sims = cosine_matrix(e)
    for i in range(len(pairs)):
        para = float(sims[2 * i, 2 * i + 1])
        unrelated = max(float(sims[2 * i, 2 * j + 1]) for j in range(len(pairs)) if j != i)
        assert para > unrelated + 0.2, (pairs[i], para, unrelated)


def test_mean_pool_ignores_padding():
    h = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    torch.testing.assert_close(mean_pool(h, mask)[0], h[0, :3].mean(0))
    torch.testing.assert_close(mean_pool(h, mask)[1], h[1].mean(0))
