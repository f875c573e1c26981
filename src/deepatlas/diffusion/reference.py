"""Our U-Net (models/unet.py) as diffusers' UNet2DModel: the same layout, names mapped one to one.

Used where a diffusers pipeline must run our trained weights (bench/bench_diffusion.py); the
parity test tests/models/test_unet.py copies the other way with the same renames."""
from __future__ import annotations

import re

from deepatlas.models.unet import UNet, UNetConfig

RENAMES = [  # diffusers' UNet2DModel name -> ours
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


def our_name(diffusers_name: str) -> str:
    for pattern, repl in RENAMES:
        diffusers_name = re.sub(pattern, repl, diffusers_name)
    return diffusers_name


def diffusers_twin(cfg: UNetConfig, sample_size: int):
    """An (untrained) UNet2DModel of our layout: attention levels are Attn*Block2D."""
    import diffusers

    return diffusers.UNet2DModel(
        sample_size=sample_size, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
        block_out_channels=cfg.channels,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention)),
        layers_per_block=cfg.layers, norm_num_groups=cfg.groups, attention_head_dim=cfg.head_dim,
        num_class_embeds=cfg.class_embeds or None, dropout=cfg.dropout, flip_sin_to_cos=True, freq_shift=0)


def to_diffusers(ours: UNet, sample_size: int):
    """A UNet2DModel holding our U-Net's weights (eval mode)."""
    ref = diffusers_twin(ours.cfg, sample_size)
    mine = ours.state_dict()
    ref.load_state_dict({name: mine[our_name(name)] for name in ref.state_dict()})
    return ref.eval()
