"""Our U-Net equals diffusers' UNet2DModel of the same tiny shape with the weights copied."""
from __future__ import annotations

import pytest
import torch

from deepatlas.diffusion.reference import diffusers_twin, our_name
from deepatlas.models.unet import UNet, UNetConfig, timestep_embedding

diffusers = pytest.importorskip("diffusers", reason="parity needs diffusers: pip install diffusers")



def copy_from_diffusers(ours: UNet, ref) -> None:
    state = {our_name(name): value for name, value in ref.state_dict().items()}
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)


def test_timestep_embedding_equals_diffusers():
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0, 1, 17, 999])
    for dim, flip, shift in ((32, True, 0.0), (16, False, 1.0), (7, True, 0.0)):
        torch.testing.assert_close(timestep_embedding(t, dim, flip, shift),
                                   get_timestep_embedding(t, dim, flip, shift))


@pytest.mark.parametrize("cfg", [
    UNetConfig(channels=(16, 32), attention=(False, True), layers=1, groups=8, head_dim=8),
    UNetConfig(in_channels=2, out_channels=1, channels=(8, 16, 16), attention=(False, True, True), layers=2,
               groups=4, head_dim=4, class_embeds=11),
])
def test_unet_equals_diffusers_unet2dmodel(cfg):
    torch.manual_seed(0)
    ref = diffusers_twin(cfg, sample_size=8).eval()
    with torch.no_grad():                        # diffusers zero-inits nothing here, but be explicit:
        for p in ref.parameters():               # random weights everywhere, so every path counts
            p.add_(0.05 * torch.randn_like(p))
    ours = UNet(cfg).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    copy_from_diffusers(ours, ref)
    x = torch.randn(3, cfg.in_channels, 8, 8)
    t = torch.tensor([0, 250, 999])
    labels = torch.tensor([0, 5, 10]) if cfg.class_embeds else None
    with torch.no_grad():
        want = ref(x, t, class_labels=labels).sample
        got = ours(x, t, labels)
    assert got.shape == (3, cfg.out_channels, 8, 8)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_unet_errors_name_the_fix():
    with pytest.raises(ValueError, match="one flag per level"):
        UNet(UNetConfig(channels=(8, 16), attention=(True,)))
    with pytest.raises(ValueError, match="pass labels"):
        UNet(UNetConfig(channels=(8, 16), groups=4, head_dim=4, class_embeds=3))(torch.zeros(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="unconditional"):
        UNet(UNetConfig(channels=(8, 16), groups=4, head_dim=4))(torch.zeros(1, 1, 4, 4), 0, torch.zeros(1).long())
