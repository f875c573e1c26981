"""Swin equal to HF SwinModel with copied weights (with and without shift, padded sizes); the pieces."""
import pytest
import torch

from deepatlas.models.swin import (SwinBlock, SwinClassifier, from_hf_state_dict, relative_position_index, shift_mask,
                                   window_partition, window_reverse)

transformers = pytest.importorskip("transformers", reason="transformers not installed: pip install transformers")


@pytest.mark.parametrize("image,patch,window,depths,heads,channels", [
    (16, 2, 4, (2, 2), (2, 4), 1),       # 8×8 then 4×4 (= window: no shift in stage 2)
    (28, 2, 4, (2, 2), (2, 2), 1),       # 14×14 padded to 16 for the windows, 7×7 padded to 8, odd merge
    (24, 4, 3, (1, 2), (1, 2), 3),       # 6×6 grid, window 3, one unshifted block then shift
    (30, 3, 2, (2, 2, 2), (1, 2, 2), 3), # 10×10 -> 5×5 (odd merge, padding) -> 3×3
])
def test_swin_equals_hf(image, patch, window, depths, heads, channels):
    torch.manual_seed(0)
    cfg = transformers.SwinConfig(image_size=image, patch_size=patch, num_channels=channels, embed_dim=8,
                                  depths=list(depths), num_heads=list(heads), window_size=window, num_labels=4,
                                  attn_implementation="eager")
    ref = transformers.SwinForImageClassification(cfg).eval()
    with torch.no_grad():   # non-zero relative position tables, so a wrong index changes the output
        for name, p in ref.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 1.0)
    ours = SwinClassifier(num_classes=4, patch_size=patch, in_channels=channels, embed_dim=8, depths=depths,
                          heads=heads, window=window).eval()
    ours.load_state_dict(from_hf_state_dict(ref.state_dict()))
    x = torch.randn(2, channels, image, image)
    with torch.no_grad():
        want = ref(x)
        torch.testing.assert_close(ours(x), want.logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.pool(x), ref.swin(x).pooler_output, atol=1e-5, rtol=1e-5)
    assert [tuple(f.shape[1:]) for f in ours.features(x)][0][0] == 8


def test_window_partition_round_trip_and_order():
    x = torch.arange(2 * 4 * 6 * 1.0).view(2, 4, 6, 1)
    w = window_partition(x, 2)
    assert w.shape == (12, 4, 1) and w[1, :, 0].tolist() == [2.0, 3.0, 8.0, 9.0]   # second window, row-major
    assert torch.equal(window_reverse(w, 2, 4, 6), x)


def test_relative_index_and_shift_mask():
    idx = relative_position_index(3)
    assert idx.shape == (9, 9) and idx.min() == 0 and idx.max() == 24 and idx.unique().numel() == 25
    assert (idx.diagonal() == 12).all()      # offset (0, 0) is the table's centre
    m = shift_mask(8, 8, 4, 2)
    assert m.shape == (4, 16, 16)
    assert (m[0] == 0).all()                 # the top-left window lies in one region
    # the last window holds 4 regions of 2×2 pixels: each pixel sees exactly its 4 region-mates
    assert ((m[3] == 0).sum(-1) == 4).all()


def test_shifted_block_mixes_neighbours_across_window_borders_only():
    torch.manual_seed(0)
    x = torch.randn(1, 64, 8)
    plain, shifted = SwinBlock(8, 2, 4, 0).eval(), SwinBlock(8, 2, 4, 2).eval()
    shifted.load_state_dict(plain.state_dict())
    for block, crosses in ((plain, False), (shifted, True)):
        xi = x.clone().requires_grad_(True)
        block(xi, 8, 8)[0, 3 * 8 + 3].sum().backward()      # output pixel (3, 3), last of window 0
        touched = xi.grad[0].abs().sum(-1).view(8, 8) > 0
        assert touched[4:, :].any() == crosses or touched[:, 4:].any() == crosses
        if not crosses:
            assert not touched[4:].any() and not touched[:, 4:].any()
