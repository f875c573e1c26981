"""CLIP: logits and loss equal Hugging Face CLIPModel (tiny random config, copied weights)."""
from __future__ import annotations

import pytest
import torch

from deepatlas.models.clip import CLIP, clip_loss, from_hf_state_dict

transformers = pytest.importorskip("transformers")

VOCAB, EOT, PAD, CTX = 30, 1, 2, 10


def _pair():
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=CTX, hidden_act="gelu",
                         eos_token_id=EOT, bos_token_id=0, pad_token_id=PAD),
        vision_config=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=3,
                           image_size=16, patch_size=4, num_channels=3, hidden_act="gelu"),
        projection_dim=16)
    ref = CLIPModel(cfg).eval()
    with torch.no_grad():   # non-trivial norms and temperature, so that a wrong mapping would show
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
        ref.logit_scale.fill_(1.7)
    ours = CLIP(VOCAB, EOT, embed_dim=16, image_size=16, patch_size=4, image_dim=24, image_depth=2,
                image_heads=3, image_mlp=48, context=CTX, text_dim=32, text_depth=2, text_heads=4,
                text_mlp=64).eval()
    ours.load_state_dict(from_hf_state_dict(ref.state_dict()))
    return ref, ours


def _batch(B: int = 4):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(B, 3, 16, 16, generator=g)
    ids = torch.full((B, CTX), PAD)
    mask = torch.zeros(B, CTX, dtype=torch.long)
    for i, n in enumerate([3, 7, 5, CTX - 1][:B]):       # rows of different lengths: SOT words EOT pad...
        ids[i, 0] = 0
        ids[i, 1:n] = torch.randint(3, VOCAB, (n - 1,), generator=g)
        ids[i, n] = EOT
        mask[i, :n + 1] = 1
    return images, ids, mask


def test_logits_and_loss_equal_hf():
    ref, ours = _pair()
    images, ids, mask = _batch()
    with torch.no_grad():
        out = ref(input_ids=ids, pixel_values=images, attention_mask=mask, return_loss=True)
        per_image, per_text = ours(images, ids, mask)
        per_image_nomask, _ = ours(images, ids)           # causal + pads after EOT: the mask cannot matter
    torch.testing.assert_close(per_image, out.logits_per_image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(per_text, out.logits_per_text, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(per_image_nomask, out.logits_per_image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(clip_loss(per_image), out.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.encode_image(images), out.image_embeds, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.encode_text(ids, mask), out.text_embeds, rtol=1e-5, atol=1e-6)


def test_loss_is_symmetric_and_low_for_matching_pairs():
    e = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    logits = 50.0 * e @ e.t()                              # each item most similar to itself
    assert clip_loss(logits) < 0.05
    shuffled = logits[torch.randperm(6, generator=torch.Generator().manual_seed(0))]
    assert clip_loss(shuffled) > clip_loss(logits)
    with pytest.raises(ValueError, match="square"):
        clip_loss(torch.zeros(3, 4))


def test_text_without_eot_is_rejected():
    _, ours = _pair()
    with pytest.raises(ValueError, match="end-of-text"):
        ours.encode_text(torch.full((2, 5), 4))
