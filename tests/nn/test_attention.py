"""Attention: the plain equation equals the fused kernel and torch.nn.MultiheadAttention."""
import pytest
import torch
from torch import nn

from deepatlas.nn.attention import KVCache, MultiHeadAttention, scaled_dot_product
from deepatlas.nn.masks import causal_mask

close = torch.testing.assert_close


def _qkv(B=2, H=4, H_kv=4, T=5, S=7, hd=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, H, T, hd, generator=g), torch.randn(B, H_kv, S, hd, generator=g),
            torch.randn(B, H_kv, S, hd, generator=g))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_kind", [None, "bool", "float"])
@pytest.mark.parametrize("H_kv", [4, 2, 1])
@pytest.mark.parametrize("S", [7, 5])
def test_plain_equals_sdpa(causal, mask_kind, H_kv, S):
    q, k, v = _qkv(H_kv=H_kv, S=S)  # T=5 queries, after S-T cached positions
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(2, 1, 5, S, generator=torch.Generator().manual_seed(1)) > 0.3
        mask[..., -1] = True  # every query keeps ≥ 1 key (its own position under causal)
    elif mask_kind == "float":
        mask = torch.randn(2, 1, 5, S)
    out_plain = scaled_dot_product(q, k, v, mask, causal, fast=False)
    out_fast = scaled_dot_product(q, k, v, mask, causal, fast=True)
    close(out_plain, out_fast, atol=1e-5, rtol=1e-5)


def test_plain_equals_naive_loop_with_cache_offset():
    """Causal with 2 cached positions: query i sees keys 0..i+2, checked one query at a time."""
    q, k, v = _qkv(B=1, H=1, H_kv=1)
    out = scaled_dot_product(q, k, v, causal=True, fast=False)
    for i in range(5):
        s = (q[0, 0, i] @ k[0, 0, : i + 3].T) / 8 ** 0.5
        close(out[0, 0, i], s.softmax(-1) @ v[0, 0, : i + 3])


def test_gqa_equals_repeated_heads():
    q, k, v = _qkv(H=6, H_kv=2)
    full = scaled_dot_product(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), fast=False)
    close(scaled_dot_product(q, k, v, fast=True), full, atol=1e-5, rtol=1e-5)


def test_causal_mask_alignment():
    assert torch.equal(causal_mask(2, 4), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool))


def _copy_from_torch(ours: MultiHeadAttention, ref: nn.MultiheadAttention, d: int) -> None:
    with torch.no_grad():
        if ref._qkv_same_embed_dim:
            wq, wk, wv = ref.in_proj_weight.split(d)
        else:
            wq, wk, wv = ref.q_proj_weight, ref.k_proj_weight, ref.v_proj_weight
        bq, bk, bv = ref.in_proj_bias.split(d)
        for lin, w, b in ((ours.q_proj, wq, bq), (ours.k_proj, wk, bk), (ours.v_proj, wv, bv)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        ours.o_proj.weight.copy_(ref.out_proj.weight)
        ours.o_proj.bias.copy_(ref.out_proj.bias)


@pytest.mark.parametrize("fast", [True, False])
def test_self_attention_equals_torch(fast):
    torch.manual_seed(0)
    d, h, B, T = 16, 4, 3, 6
    ref = nn.MultiheadAttention(d, h, batch_first=True).eval()
    ours = MultiHeadAttention(d, h).eval()
    _copy_from_torch(ours, ref, d)
    x = torch.randn(B, T, d)
    pad = torch.zeros(B, T, dtype=torch.bool)
    pad[1, 4:] = True
    pad[2, 2:] = True
    keep = causal_mask(T)
    # torch's bool attn_mask means True = NOT allowed, ours True = allowed
    expected, _ = ref(x, x, x, key_padding_mask=pad, attn_mask=~keep, need_weights=False)
    close(ours(x, mask=keep, key_padding_mask=pad, fast=fast), expected, atol=1e-5, rtol=1e-5)
    close(ours(x, causal=True, key_padding_mask=pad, fast=fast), expected, atol=1e-5, rtol=1e-5)
    float_mask = torch.randn(T, T)
    expected, _ = ref(x, x, x, attn_mask=float_mask, need_weights=False)
    close(ours(x, mask=float_mask, fast=fast), expected, atol=1e-5, rtol=1e-5)


def test_cross_attention_equals_torch():
    torch.manual_seed(1)
    d, h, B, T, S = 16, 2, 2, 4, 9
    ref = nn.MultiheadAttention(d, h, batch_first=True, kdim=12, vdim=12).eval()
    ours = MultiHeadAttention(d, h, context_dim=12).eval()
    _copy_from_torch(ours, ref, d)
    x, mem = torch.randn(B, T, d), torch.randn(B, S, 12)
    pad = torch.zeros(B, S, dtype=torch.bool)
    pad[0, 5:] = True
    expected, _ = ref(x, mem, mem, key_padding_mask=pad, need_weights=False)
    close(ours(x, mem, key_padding_mask=pad), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_cached_incremental_equals_full(n_kv_head):
    torch.manual_seed(2)
    d, h, B, T = 32, 4, 2, 7
    mha = MultiHeadAttention(d, h, n_kv_head=n_kv_head, bias=False).eval()
    x = torch.randn(B, T, d)
    full = mha(x, causal=True)
    cache = KVCache(n_layer=1, batch=B, n_kv_head=n_kv_head, max_len=16, head_dim=d // h)
    # a 3-token prompt, then one token at a time
    parts = [mha(x[:, :3], causal=True, cache=cache, pos=0)]
    for t in range(3, T):
        parts.append(mha(x[:, t:t + 1], causal=True, cache=cache, pos=t))
    close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == T
    cache.crop(4)
    redo = mha(x[:, 4:], causal=True, cache=cache, pos=4)
    close(redo, full[:, 4:], atol=1e-5, rtol=1e-5)
    cache.reset()
    assert cache.length == 0


def test_cache_errors_name_the_problem():
    cache = KVCache(1, 1, 1, max_len=4, head_dim=2)
    with pytest.raises(ValueError, match="max_len 4"):
        cache.update(0, torch.zeros(1, 1, 5, 2), torch.zeros(1, 1, 5, 2), 0)
    with pytest.raises(ValueError, match="n_head 4 must be a multiple of n_kv_head 3"):
        MultiHeadAttention(8, 4, n_kv_head=3)


def test_cache_reorder_keeps_the_chosen_rows():
    cache = KVCache(2, 3, 1, max_len=4, head_dim=2)
    for layer in range(2):
        k = torch.arange(3.0)[:, None, None, None].expand(3, 1, 2, 2)
        cache.update(layer, k, -k, 0)
    cache.reorder(torch.tensor([2, 2, 0]))
    k, v = cache.update(1, torch.full((3, 1, 1, 2), 9.0), torch.zeros(3, 1, 1, 2), 2)
    assert k[:, 0, :2, 0].tolist() == [[2, 2], [2, 2], [0, 0]]
    assert v[:, 0, 0, 0].tolist() == [-2, -2, 0]
    assert k[:, 0, 2, 0].tolist() == [9, 9, 9]


@pytest.mark.parametrize("n_kv_head,bias", [(4, True), (2, False)])
def test_fused_qkv_equals_three_projections(n_kv_head, bias):
    """The one-matmul q/k/v path (B·T ≥ FUSE_QKV_MIN_ROWS) equals the three projections,
    outputs and every gradient; the parameters keep their q_proj/k_proj/v_proj names."""
    torch.manual_seed(3)
    mha = MultiHeadAttention(32, 4, n_kv_head=n_kv_head, bias=bias)
    x = torch.randn(2, 40, 32)
    assert mha._fuse_qkv(2 * 40) and not mha._fuse_qkv(1)
    outs, grads = [], []
    for fused_rows in (64, 10 ** 9):          # fused, then never fused
        mha.FUSE_QKV_MIN_ROWS = fused_rows
        xi = x.clone().requires_grad_(True)
        y = mha(xi, causal=True)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y)
        grads.append([xi.grad] + [p.grad.clone() for p in mha.parameters()])
        mha.zero_grad()
    close(outs[0], outs[1])
    for a, b in zip(*grads):
        close(a, b)
    assert {n.split(".")[0] for n, _ in mha.named_parameters()} == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_one_query_after_cache_needs_no_mask():
    """causal with T = 1 query at the last of S positions: every key is visible."""
    q, k, v = _qkv(T=1, S=9)
    for fast in (True, False):
        close(scaled_dot_product(q, k, v, causal=True, fast=fast),
              scaled_dot_product(q, k, v, mask=causal_mask(1, 9), fast=False))
