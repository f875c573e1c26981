"""PatchGAN receptive field (computed = measured by gradients; the paper's 70×70), edge maps, Pix2Pix step."""
from __future__ import annotations

import pytest
import torch

from deepatlas.models.pix2pix import PatchDiscriminator, UNetTranslator, edge_map, train_pix2pix


def _measured_field(disc: PatchDiscriminator, size: int) -> int:
    """Side of the input region whose pixels change the centre output logit (nonzero gradient)."""
    x = torch.randn(1, disc.net[0].in_channels, size, size, requires_grad=True)
    out = disc(x)
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    hit = x.grad.abs().sum((0, 1)) > 0                                       # (size, size)
    rows, cols = hit.any(1).nonzero(), hit.any(0).nonzero()
    assert rows.max() < size - 1 and rows.min() > 0                          # the field lies inside the input
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("make,size", [(PatchDiscriminator, 40), (lambda: PatchDiscriminator.paper_70(2), 160)])
def test_receptive_field_computed_equals_measured(make, size):
    torch.manual_seed(0)
    disc = make()
    rf = disc.receptive_field
    assert _measured_field(disc, size) == (rf, rf)


def test_paper_patchgan_is_70_and_ours_8():
    assert PatchDiscriminator.paper_70().receptive_field == 70
    d = PatchDiscriminator()
    assert d.receptive_field == 8 and d(torch.zeros(2, 2, 14, 14)).shape == (2, 1, 7, 7)
    with pytest.raises(ValueError, match="last width 1"):
        PatchDiscriminator(2, (32, 8), (4, 3), (2, 1))


def test_edge_map_finds_the_outline_of_a_square():
    x = -torch.ones(1, 1, 14, 14)
    x[..., 4:10, 4:10] = 1.0
    e = edge_map(x)
    assert e.min() >= -1 and e.max() == pytest.approx(1.0)
    assert float(e[0, 0, 7, 7]) == -1.0 and float(e[0, 0, 0, 0]) == -1.0    # flat inside and outside
    assert float(e[0, 0, 4, 7]) > 0                                           # on the border


def test_l1_training_lowers_l1_and_translator_shape():
    torch.manual_seed(0)
    gen = UNetTranslator(channels=(8, 16))
    src = torch.rand(16, 1, 14, 14) * 2 - 1
    tgt = -src                                                                 # a learnable map
    curve = []
    train_pix2pix(gen, PatchDiscriminator(), src, tgt, 30, batch=8, lr=2e-3, log=lambda s, l, d: curve.append(l),
                  log_every=29)
    assert gen(src).shape == src.shape and curve[-1] < curve[0]
