"""ViT equal to HF ViTForImageClassification with copied weights; patch forms equal; attention maps."""
import pytest
import torch

from deepatlas.models.vit import ViT, from_hf_state_dict

transformers = pytest.importorskip("transformers", reason="transformers not installed: pip install transformers")


def _pair(image, patch, channels, dim=32, depth=2, heads=4, form="conv"):
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=image, patch_size=patch, num_channels=channels, hidden_size=dim,
                                 num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=2 * dim,
                                 num_labels=5, attn_implementation="eager")
    ref = transformers.ViTForImageClassification(cfg).eval()
    ours = ViT(image, patch, channels, 5, dim, depth, heads, 2 * dim, eps=cfg.layer_norm_eps, patch_form=form).eval()
    ours.load_state_dict(from_hf_state_dict(ref.state_dict()))
    return ref, ours


@pytest.mark.parametrize("image,patch,channels,form", [(28, 4, 1, "conv"), (28, 7, 1, "unfold"), (32, 8, 3, "conv"),
                                                       (24, 6, 3, "unfold")])
def test_vit_logits_and_attention_equal_hf(image, patch, channels, form):
    ref, ours = _pair(image, patch, channels, form=form)
    x = torch.randn(3, channels, image, image)
    with torch.no_grad():
        want = ref(x, output_attentions=True)
        logits, maps = ours(x, return_attention=True)
    torch.testing.assert_close(logits, want.logits, atol=1e-5, rtol=1e-5)
    assert len(maps) == len(want.attentions)
    for a, b in zip(maps, want.attentions):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones_like(maps[0][..., 0]))   # rows are distributions


def test_position_interpolation_equals_hf_at_a_new_resolution():
    ref, ours = _pair(16, 4, 3)
    x = torch.randn(2, 3, 24, 32)           # 4×4 grid trained, 6×8 grid used
    with torch.no_grad():
        want = ref(x, interpolate_pos_encoding=True).logits
        torch.testing.assert_close(ours(x, interpolate=True), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="interpolate=True"):
        ours(x)


def test_conv_and_unfold_patch_embeddings_are_equal():
    conv = ViT(28, 7, 1, patch_form="conv")
    unfold = ViT(28, 7, 1, patch_form="unfold")
    unfold.load_state_dict(conv.state_dict())
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(unfold.patch_embed(x), conv.patch_embed(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="not divisible"):
        ViT(28, 5)
