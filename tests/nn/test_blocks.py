"""Blocks equal torch.nn.TransformerEncoderLayer / TransformerDecoderLayer with copied weights."""
import pytest
import torch
from torch import nn

from deepatlas.nn.attention import KVCache
from deepatlas.nn.blocks import TransformerBlock
from deepatlas.nn.masks import causal_mask
from deepatlas.nn.positions import RotaryEmbedding

close = torch.testing.assert_close
D, H, FF = 16, 4, 24


def _copy_mha(ours, ref):
    wq, wk, wv = ref.in_proj_weight.split(D)
    bq, bk, bv = ref.in_proj_bias.split(D)
    for lin, w, b in ((ours.q_proj, wq, bq), (ours.k_proj, wk, bk), (ours.v_proj, wv, bv),
                      (ours.o_proj, ref.out_proj.weight, ref.out_proj.bias)):
        lin.weight.copy_(w)
        lin.bias.copy_(b)


def _copy_norm(ours, ref):
    ours.weight.copy_(ref.weight)
    ours.bias.copy_(ref.bias)


@torch.no_grad()
def _copy_layer(ours: TransformerBlock, ref: nn.Module) -> None:
    _copy_mha(ours.self_attn, ref.self_attn)
    ours.ffn.up_proj.weight.copy_(ref.linear1.weight)
    ours.ffn.up_proj.bias.copy_(ref.linear1.bias)
    ours.ffn.down_proj.weight.copy_(ref.linear2.weight)
    ours.ffn.down_proj.bias.copy_(ref.linear2.bias)
    _copy_norm(ours.norm1, ref.norm1)
    if isinstance(ref, nn.TransformerDecoderLayer):
        _copy_mha(ours.cross_attn, ref.multihead_attn)
        _copy_norm(ours.norm_cross, ref.norm2)
        _copy_norm(ours.norm2, ref.norm3)
    else:
        _copy_norm(ours.norm2, ref.norm2)


def _randomize_norms(module):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_equals_torch(norm_first, activation):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=activation,
                                     batch_first=True, norm_first=norm_first)
    _randomize_norms(ref)
    ours = TransformerBlock(D, H, FF, norm_first=norm_first, activation=activation)
    _copy_layer(ours, ref)
    x = torch.randn(3, 6, D)
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[0, 3:] = True
    for m in (ref, ours):
        m.train()  # train mode (dropout 0) keeps torch off its fused inference fast path
    close(ours(x, key_padding_mask=pad), ref(x, src_key_padding_mask=pad), atol=1e-5, rtol=1e-5)
    close(ours(x, causal=True), ref(x, src_mask=~causal_mask(6), is_causal=True), atol=1e-5, rtol=1e-5)
    ref.eval(), ours.eval()
    close(ours(x, key_padding_mask=pad)[~pad], ref(x, src_key_padding_mask=pad)[~pad], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_block_equals_torch(norm_first):
    torch.manual_seed(1)
    ref = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    _randomize_norms(ref)
    ours = TransformerBlock(D, H, FF, cross_attention=True, norm_first=norm_first)
    _copy_layer(ours, ref)
    x, memory = torch.randn(2, 5, D), torch.randn(2, 8, D)
    mem_pad = torch.zeros(2, 8, dtype=torch.bool)
    mem_pad[1, 6:] = True
    expected = ref(x, memory, tgt_mask=~causal_mask(5), memory_key_padding_mask=mem_pad, tgt_is_causal=True)
    close(ours(x, memory, causal=True, memory_key_padding_mask=mem_pad), expected, atol=1e-5, rtol=1e-5)
    close(ours(x, memory, causal=True, memory_key_padding_mask=mem_pad, fast=False), expected,
          atol=1e-5, rtol=1e-5)


def test_prenorm_rope_gqa_block_cached_equals_full():
    """A LLaMA-style block (RMSNorm, SwiGLU, GQA, RoPE) decoded token by token equals one full pass."""
    torch.manual_seed(2)
    block = TransformerBlock(32, 4, 48, norm_first=True, norm="rmsnorm", activation="swiglu",
                             bias=False, n_kv_head=2, rope=RotaryEmbedding(8, theta=10000.0)).eval()
    x = torch.randn(2, 6, 32)
    full = block(x, causal=True)
    cache = KVCache(1, 2, 2, max_len=6, head_dim=8)
    steps = [block(x[:, :2], causal=True, cache=cache, pos=0)]
    steps += [block(x[:, t:t + 1], causal=True, cache=cache, pos=t) for t in range(2, 6)]
    close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_bias_false_drops_every_bias_like_torch():
    ref = nn.TransformerEncoderLayer(D, H, FF, batch_first=True, bias=False)
    ours = TransformerBlock(D, H, FF, bias=False)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    assert not any(name.endswith("bias") for name, _ in ours.named_parameters())
