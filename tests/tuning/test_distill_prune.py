"""Distillation loss = its definition = torch's KL form, the T² factor's gradients; every-other-layer
students; global magnitude pruning = torch.nn.utils.prune's; structured pruning is exact."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torch.nn.utils.prune as tprune

from deepatlas.models.vit import ViT
from deepatlas.nn.attention import MultiHeadAttention
from deepatlas.nn.ffn import FeedForward
from deepatlas.tuning.distill import distillation_loss, every_other_layer, parameter_count, soft_kl
from deepatlas.tuning.prune import (apply_masks, magnitude_prune, prunable_weights, prune_heads, prune_mlp_units,
                                    sparsity)


def test_soft_kl_equals_torch_kl_div_and_loss_mixes_ce():
    torch.manual_seed(0)
    s, t, y = torch.randn(16, 10), torch.randn(16, 10) * 3, torch.randint(0, 10, (16,))
    for T in (1.0, 4.0):
        ref = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="batchmean")
        torch.testing.assert_close(soft_kl(s, t, T), ref)
    expected = 0.7 * 16 * soft_kl(s, t, 4.0) + 0.3 * F.cross_entropy(s, y)
    torch.testing.assert_close(distillation_loss(s, t, y, T=4.0, alpha=0.7), expected)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(s, t, T=0)


def test_t_squared_keeps_gradients_t_free():
    """Hinton §2.1: for large T and zero-mean logits, ∂(T² KL)/∂z ≈ (z − v) / N, whatever T."""
    torch.manual_seed(1)
    z, v = torch.randn(8, 5), torch.randn(8, 5)
    z, v = z - z.mean(-1, keepdim=True), v - v.mean(-1, keepdim=True)
    for T in (20.0, 50.0):
        zz = z.clone().requires_grad_(True)
        distillation_loss(zz, v, T=T, alpha=1.0).backward()
        torch.testing.assert_close(zz.grad, (z - v) / (z.size(-1) * 8), atol=3e-3, rtol=0.05)


def test_every_other_layer_student():
    teacher = ViT(28, 7, 1, 10, dim=32, depth=4, heads=4, mlp_dim=64).eval()
    student = every_other_layer(teacher)
    assert len(student.blocks) == 2 and len(teacher.blocks) == 4
    for s, t in zip(student.blocks, teacher.blocks[::2]):
        for (n, a), (_, b) in zip(s.state_dict().items(), t.state_dict().items()):
            assert torch.equal(a, b), n
    assert torch.equal(student.head.weight, teacher.head.weight)
    assert parameter_count(student) < parameter_count(teacher)
    with pytest.raises(ValueError, match="keep"):
        every_other_layer(teacher, keep=[7])


def test_global_magnitude_pruning_equals_torch():
    torch.manual_seed(2)
    a, b = ViT(28, 7, 1, 10, dim=32, depth=2, heads=4, mlp_dim=64), None
    b = copy.deepcopy(a)
    masks = magnitude_prune(a, 0.6)
    names = list(prunable_weights(b))
    mods = dict(b.named_modules())
    tprune.global_unstructured([(mods[n.rsplit(".", 1)[0]], "weight") for n in names],
                               pruning_method=tprune.L1Unstructured, amount=0.6)
    for n in names:
        m = mods[n.rsplit(".", 1)[0]]
        assert torch.equal(masks[n], m.weight_mask.bool()), n
    w = list(prunable_weights(a).values())
    assert abs(sparsity(w) - 0.6) < 1e-3
    with torch.no_grad():
        for p in w:
            p.add_(1.0)                                     # an update moves the zeros ...
    apply_masks(a, masks)
    assert abs(sparsity(w) - 0.6) < 1e-3                     # ... and the masks put them back


def test_structured_pruning_is_exact():
    torch.manual_seed(3)
    x = torch.randn(2, 6, 32)
    ffn = FeedForward(32, 64, "gelu")
    ref = copy.deepcopy(ffn)
    kept = prune_mlp_units(ffn, 40)
    dropped = torch.tensor([j for j in range(64) if j not in kept.tolist()])
    with torch.no_grad():
        ref.down_proj.weight[:, dropped] = 0                 # the same units switched off
    torch.testing.assert_close(ffn(x), ref(x))
    assert ffn.up_proj.out_features == 40
    attn = MultiHeadAttention(32, 4)
    ref = copy.deepcopy(attn)
    heads = prune_heads(attn, 2)
    gone = [h for h in range(4) if h not in heads.tolist()]
    with torch.no_grad():
        for h in gone:
            ref.o_proj.weight[:, h * 8:(h + 1) * 8] = 0
    torch.testing.assert_close(attn(x), ref(x))
    assert attn.n_head == 2 and attn.q_proj.out_features == 16
