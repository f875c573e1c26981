"""to_diffusers: a UNet2DModel holding our trained weights computes what our U-Net computes."""
from __future__ import annotations

import pytest
import torch

from deepatlas.models.unet import UNet, UNetConfig

pytest.importorskip("diffusers", reason="needs diffusers: pip install diffusers")


@pytest.mark.parametrize("cfg", [UNetConfig(channels=(8, 16), attention=(False, True), groups=4, head_dim=8),
                                 UNetConfig(channels=(8, 16), attention=(False, True), groups=4, head_dim=8,
                                            class_embeds=11)])
def test_to_diffusers_equals_ours(cfg):
    from deepatlas.diffusion.reference import to_diffusers

    torch.manual_seed(0)
    ours = UNet(cfg).eval()
    twin = to_diffusers(ours, 8)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 800])
    labels = torch.tensor([2, 10]) if cfg.class_embeds else None
    with torch.no_grad():
        torch.testing.assert_close(twin(x, t, class_labels=labels).sample, ours(x, t, labels), atol=1e-5, rtol=1e-5)
