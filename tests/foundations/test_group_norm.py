"""GroupNorm / InstanceNorm equal to torch's in train and eval (outputs, gradients, running stats)."""
import pytest
import torch
from torch import nn

from deepatlas.foundations.group_norm import GroupNorm, InstanceNorm


def _check(ours, ref, shape, steps=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(generator=g)
    ref.load_state_dict(ours.state_dict())
    for mode in ["train"] * steps + ["eval"]:
        ours.train(mode == "train"); ref.train(mode == "train")
        x = torch.randn(shape, generator=g) * 2 + 0.7
        outs = []
        for m in (ours, ref):
            xi = x.clone().requires_grad_(True)
            y = m(xi)
            (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
            outs.append([y.detach(), xi.grad] + [p.grad.clone() for p in m.parameters()])
            m.zero_grad()
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        for name, buf in ref.named_buffers():
            torch.testing.assert_close(dict(ours.named_buffers())[name], buf)


@pytest.mark.parametrize("groups", [1, 2, 8])
def test_group_norm_equals_torch(groups):
    _check(GroupNorm(groups, 8), nn.GroupNorm(groups, 8), (4, 8, 5, 3))
    _check(GroupNorm(groups, 8, affine=False), nn.GroupNorm(groups, 8, affine=False), (3, 8, 7))


@pytest.mark.parametrize("affine,track", [(False, False), (True, False), (True, True), (False, True)])
def test_instance_norm_equals_torch(affine, track):
    _check(InstanceNorm(6, affine=affine, track_running_stats=track),
           nn.InstanceNorm2d(6, affine=affine, track_running_stats=track), (4, 6, 5, 5))
    _check(InstanceNorm(6, affine=affine, track_running_stats=track),
           nn.InstanceNorm1d(6, affine=affine, track_running_stats=track), (4, 6, 9))


def test_bad_shapes_named():
    with pytest.raises(ValueError, match="multiple of num_groups"):
        GroupNorm(3, 8)
    with pytest.raises(ValueError, match="expects"):
        InstanceNorm(4)(torch.zeros(2, 4))
