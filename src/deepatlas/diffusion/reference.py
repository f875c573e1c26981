"""Our U-Net (models/unet.py) as diffusers' UNet2DModel: the same layout, names mapped one to one.

Used where a diffusers pipeline must run our trained weights (bench/bench_diffusion.py); the
parity test tests/models/test_unet.py copies the other way with the same renames.
The latent-diffusion pieces (G9) map the same way: the text-conditional U-Net to
UNet2DConditionModel (COND_RENAMES first, GEGLU's fused projection split in two) and
models/autoencoder_kl.py to AutoencoderKL (tests/models/test_ldm.py)."""
from __future__ import annotations

import re

from torch import Tensor

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


COND_RENAMES = [  # UNet2DConditionModel's Transformer2DModel / BasicTransformerBlock -> SpatialTransformer
    (r"\.transformer_blocks\.", ".blocks."),
    (r"\.attn1\.to_(q|k|v)\.", r".self_attn.\1_proj."), (r"\.attn1\.to_out\.0", ".self_attn.o_proj"),
    (r"\.attn2\.to_(q|k|v)\.", r".cross_attn.\1_proj."), (r"\.attn2\.to_out\.0", ".cross_attn.o_proj"),
    (r"(blocks\.\d+)\.norm2", r"\1.norm_cross"), (r"(blocks\.\d+)\.norm3", r"\1.norm2"),
    (r"\.ff\.net\.0\.proj", ".ffn.geglu"), (r"\.ff\.net\.2", ".ffn.down_proj"),
    (r"^class_embedding\.linear_1", "pooled_embedding.0"), (r"^class_embedding\.linear_2", "pooled_embedding.2"),
]


def _split_geglu(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """diffusers' GEGLU projects to [x V | x W] in one Linear: ours keeps up_proj (V) and gate_proj (W)."""
    out = {}
    for name, value in state.items():
        if ".ffn.geglu." in name:
            up, gate = value.chunk(2, dim=0)
            out[name.replace(".ffn.geglu.", ".ffn.up_proj.")] = up
            out[name.replace(".ffn.geglu.", ".ffn.gate_proj.")] = gate
        else:
            out[name] = value
    return out


def from_diffusers_cond_unet(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A UNet2DConditionModel state dict in our UNet's names (UNetConfig.context_dim > 0)."""
    renamed = {}
    for name, value in state.items():
        for pattern, repl in COND_RENAMES:
            name = re.sub(pattern, repl, name)
        renamed[our_name(name)] = value
    return _split_geglu(renamed)


def diffusers_cond_twin(cfg: UNetConfig, sample_size: int):
    """An (untrained) UNet2DConditionModel of our text-conditional layout: CrossAttn*Block2D at attention levels."""
    import diffusers

    if not cfg.context_dim:
        raise ValueError("the conditional twin needs UNetConfig.context_dim > 0 (cross-attention)")
    return diffusers.UNet2DConditionModel(
        sample_size=sample_size, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
        block_out_channels=cfg.channels,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention)),
        mid_block_type="UNetMidBlock2DCrossAttn", layers_per_block=cfg.layers, norm_num_groups=cfg.groups,
        # diffusers reads `attention_head_dim` as the number of heads (its issue #2011)
        attention_head_dim=tuple(c // cfg.head_dim for c in cfg.channels), cross_attention_dim=cfg.context_dim,
        dropout=cfg.dropout, flip_sin_to_cos=True, freq_shift=0,
        # a pooled text embedding: class_embedding = TimestepEmbedding(pooled_dim, temb), added to temb
        **({"class_embed_type": "projection", "projection_class_embeddings_input_dim": cfg.pooled_dim}
           if cfg.pooled_dim else {}))


def from_diffusers_vae(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An AutoencoderKL state dict in the names of models/autoencoder_kl.AutoencoderKL."""
    out = {}
    for name, value in state.items():
        prefix, _, rest = name.partition(".")
        if prefix in ("encoder", "decoder"):
            rest = re.sub(r"\.downsamplers\.0\.conv", ".resample.conv", rest)   # padded stride-2 conv
            name = f"{prefix}.{our_name(rest)}"
        out[name] = value
    return out
