"""Our U-Net equals diffusers' UNet2DModel of the same tiny shape with the weights copied."""
from __future__ import annotations

import re

import pytest
import torch

from deepatlas.models.unet import UNet, UNetConfig, timestep_embedding

diffusers = pytest.importorskip("diffusers", reason="parity needs diffusers: pip install diffusers")

RENAMES = [  # diffusers name -> ours
    (r"^time_embedding\.linear_1", "time_mlp.0"), (r"^time_embedding\.linear_2", "time_mlp.2"),
    (r"^down_blocks\.", "downs."), (r"^up_blocks\.", "ups."),
    (r"\.downsamplers\.0\.conv", ".resample"), (r"\.upsamplers\.0\.conv", ".resample.conv"),
    (r"^mid_block\.resnets\.0", "mid.0"), (r"^mid_block\.attentions\.0", "mid.1"),
    (r"^mid_block\.resnets\.1", "mid.2"),
    (r"\.time_emb_proj", ".time_proj"), (r"\.conv_shortcut", ".shortcut"),
    (r"\.group_norm", ".norm"), (r"\.to_q", ".attn.q_proj"), (r"\.to_k", ".attn.k_proj"),
    (r"\.to_v", ".attn.v_proj"), (r"\.to_out\.0", ".attn.o_proj"),
    (r"^conv_norm_out", "norm_out"),
]


def diffusers_twin(cfg: UNetConfig):
    """A UNet2DModel with our layout: attention levels are Attn*Block2D."""
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention))
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=cfg.in_channels, out_channels=cfg.out_channels, block_out_channels=cfg.channels,
        down_block_types=down, up_block_types=up, layers_per_block=cfg.layers, norm_num_groups=cfg.groups,
        attention_head_dim=cfg.head_dim, num_class_embeds=cfg.class_embeds or None, dropout=cfg.dropout,
        flip_sin_to_cos=True, freq_shift=0)


def copy_from_diffusers(ours: UNet, ref) -> None:
    state = {}
    for name, value in ref.state_dict().items():
        for pattern, repl in RENAMES:
            name = re.sub(pattern, repl, name)
        state[name] = value
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
    ref = diffusers_twin(cfg).eval()
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
