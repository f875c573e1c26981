"""Our LayerNorm / RMSNorm / BatchNorm / dropout equal torch's, forward and backward, train and eval."""
import pytest
import torch
from torch import nn

from deepatlas.nn.norms import BatchNorm, Dropout, LayerNorm, RMSNorm, dropout, dropout_mask


def _randomise(*mods):
    g = torch.Generator().manual_seed(1)
    for m in mods:
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g))


def _fwd_bwd(mod, x):
    x = x.clone().requires_grad_(True)
    y = mod(x)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    (y * w).sum().backward()
    return y, x.grad, {n: p.grad for n, p in mod.named_parameters()}


def _assert_same(ours, ref, x):
    y1, gx1, gp1 = _fwd_bwd(ours, x)
    y2, gx2, gp2 = _fwd_bwd(ref, x)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(gx1, gx2)
    assert gp1.keys() == gp2.keys()
    for n in gp1:
        torch.testing.assert_close(gp1[n], gp2[n], msg=n)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_equals_torch(bias, fast):
    ours, ref = LayerNorm(16, eps=1e-5, bias=bias, fast=fast), nn.LayerNorm(16, eps=1e-5, bias=bias)
    _randomise(ours)
    ref.load_state_dict(ours.state_dict())
    _assert_same(ours, ref, torch.randn(3, 5, 16) * 3 + 1)


@pytest.mark.parametrize("fast", [True, False])
def test_rmsnorm_equals_torch(fast):
    ours, ref = RMSNorm(16, eps=1e-6, fast=fast), nn.RMSNorm(16, eps=1e-6)
    _randomise(ours)
    ref.load_state_dict(ours.state_dict())
    _assert_same(ours, ref, torch.randn(3, 5, 16) * 3 + 1)


def test_norm_formula_equals_fused_kernel():
    """The plain (formula) path and the fused kernel agree, fp32 and bf16 (RMSNorm's bf16 keeps
    the formula either way: its fp32-then-cast order is Llama's)."""
    x = torch.randn(4, 7, 32) * 2 + 0.5
    ln, rms = LayerNorm(32), RMSNorm(32)
    _randomise(ln, rms)
    for mod in (ln, rms):
        fast = mod(x)
        mod.fast = False
        torch.testing.assert_close(mod(x), fast)
        mod.fast = True
    torch.testing.assert_close(RMSNorm(32).bfloat16()(x.bfloat16()),
                               RMSNorm(32, fast=False).bfloat16()(x.bfloat16()), atol=0, rtol=0)


def test_rmsnorm_is_not_layernorm():
    """Guard: with a non-zero mean the two norms must differ (RMSNorm does not centre)."""
    x = torch.randn(4, 16) + 2.0
    assert not torch.allclose(RMSNorm(16)(x), LayerNorm(16)(x), atol=1e-2)


@pytest.mark.parametrize("shape,ref_cls", [((8, 6), nn.BatchNorm1d), ((8, 6, 5), nn.BatchNorm1d),
                                           ((4, 6, 3, 5), nn.BatchNorm2d)])
def test_batchnorm_train_then_eval_equals_torch(shape, ref_cls):
    ours, ref = BatchNorm(6, eps=1e-5, momentum=0.1), ref_cls(6, eps=1e-5, momentum=0.1)
    _randomise(ours)
    ref.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(0)
    for _ in range(5):                       # several steps: running stats accumulate
        x = torch.randn(shape, generator=g) * 2 + 0.5
        _assert_same(ours.train(), ref.train(), x)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 5
    _assert_same(ours.eval(), ref.eval(), torch.randn(shape, generator=g))


def test_batchnorm_rejects_wrong_channels():
    with pytest.raises(ValueError, match="expects"):
        BatchNorm(6)(torch.randn(4, 5))


def test_dropout_equals_torch_pattern_and_eval_is_identity():
    x = torch.randn(50, 40)
    p = 0.3
    torch.manual_seed(7)
    ref = torch.nn.functional.dropout(x, p, training=True)
    mask = ref != 0                          # torch's kept units (x has no exact zeros)
    torch.testing.assert_close(dropout(x, p, training=True, mask=mask), ref)
    torch.testing.assert_close(Dropout(p).eval()(x), x)


def test_dropout_preserves_expectation():
    torch.manual_seed(0)
    x = torch.full((200_000,), 2.0)
    y = Dropout(0.4).train()(x)
    assert abs(y.mean().item() - 2.0) < 0.02           # E[y] = x; sd of mean ≈ 0.004
    assert abs((y == 0).float().mean().item() - 0.4) < 0.01
    kept = dropout_mask((100_000,), 0.25, generator=torch.Generator().manual_seed(3)).float().mean()
    assert abs(kept.item() - 0.75) < 0.01


def test_dropout_rejects_bad_p():
    with pytest.raises(ValueError, match="p must be"):
        Dropout(1.0)
