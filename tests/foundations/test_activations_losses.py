"""Activations and losses written from formulas equal torch.nn.functional, values and gradients."""
import pytest
import torch
import torch.nn.functional as F

from deepatlas.foundations import activations as A
from deepatlas.foundations import losses as L
from deepatlas.foundations.mlp import MLP, GaussianMLP


def _same_with_grad(ours, ref, *inputs):
    a = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    b = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    ya, yb = ours(*a), ref(*b)
    torch.testing.assert_close(ya, yb)
    w = torch.randn(ya.shape, generator=torch.Generator().manual_seed(5))
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    for x, y in zip(a, b):
        if x.requires_grad:
            torch.testing.assert_close(x.grad, y.grad)


X = torch.cat([torch.randn(200, generator=torch.Generator().manual_seed(0)) * 4,
               torch.tensor([-120.0, -30.0, 0.0, 30.0, 120.0])]).reshape(5, 41)


@pytest.mark.parametrize("name,ours,ref", [
    ("relu", A.relu, F.relu),
    ("sigmoid", A.sigmoid, torch.sigmoid),
    ("tanh", A.tanh, torch.tanh),
    ("softmax", lambda x: A.softmax(x, dim=-1), lambda x: F.softmax(x, dim=-1)),
    ("log_softmax", lambda x: A.log_softmax(x, dim=0), lambda x: F.log_softmax(x, dim=0)),
    ("gelu", A.gelu, F.gelu),
    ("gelu_tanh", lambda x: A.gelu(x, "tanh"), lambda x: F.gelu(x, approximate="tanh")),
])
def test_activation_equals_torch(name, ours, ref):
    _same_with_grad(ours, ref, X)
    assert torch.isfinite(ours(X)).all()


def test_gelu_forms_differ_and_bad_name_rejected():
    x = torch.linspace(-4, 4, 101)
    gap = (A.gelu(x) - A.gelu(x, "tanh")).abs().max().item()
    assert 1e-5 < gap < 1e-3           # the tanh form is an approximation, close but not equal
    with pytest.raises(ValueError, match="approximate='erf'"):
        A.gelu(x, "erf")


def test_mse_ce_bce_equal_torch():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(7, 3, generator=g), torch.randn(7, 3, generator=g)
    _same_with_grad(L.mse, F.mse_loss, pred, target)
    logits = torch.randn(9, 6, generator=g) * 10
    labels = torch.randint(0, 6, (9,), generator=g)
    _same_with_grad(L.cross_entropy, F.cross_entropy, logits, labels)
    z = torch.cat([torch.randn(20, generator=g) * 5, torch.tensor([-200.0, 200.0, 0.0])])
    y = torch.rand(23, generator=g)
    _same_with_grad(L.bce_with_logits, F.binary_cross_entropy_with_logits, z, y)
    assert torch.isfinite(L.bce_with_logits(z, y))


@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_equals_torch(full):
    g = torch.Generator().manual_seed(2)
    mu, y = torch.randn(30, generator=g), torch.randn(30, generator=g)
    var = torch.rand(30, generator=g) * 2
    var[:3] = torch.tensor([0.0, 1e-9, 1e-7])          # below eps: clamped like torch
    _same_with_grad(lambda m, t, v: L.gaussian_nll(m, t, v, full=full),
                    lambda m, t, v: F.gaussian_nll_loss(m, t, v, full=full), mu, y, var)
    log_var = torch.randn(30, generator=g)
    torch.testing.assert_close(L.gaussian_nll_logvar(mu, log_var, y, full=full),
                               F.gaussian_nll_loss(mu, y, log_var.exp(), full=full))


def test_cross_entropy_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        L.cross_entropy(torch.randn(3, 4, 5), torch.zeros(3))


def test_mlp_forward_is_the_layer_formula():
    torch.manual_seed(0)
    m = MLP([4, 8, 3], activation="tanh")
    x = torch.randn(5, 4)
    h = torch.tanh(x @ m.linears[0].weight.T + m.linears[0].bias)
    torch.testing.assert_close(m(x), h @ m.linears[1].weight.T + m.linears[1].bias)
    mu, s = GaussianMLP(2, hidden=8)(torch.randn(6, 2))
    assert mu.shape == s.shape == (6,)
    with pytest.raises(ValueError, match="norm 'group'"):
        MLP([2, 2, 2], norm="group")
