"""Our numpy autograd's gradients equal torch.autograd's (float64) and central finite differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deepatlas.foundations.autograd import MLP, Tensor, gradient_check, softmax_cross_entropy, unbroadcast

RNG = np.random.default_rng(0)


def _both(fn_ours, fn_torch, *arrays):
    """Run the same scalar function on our Tensors and torch tensors; return grads of both."""
    ours = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn_ours(*ours)
    out.backward()
    ref = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out_t = fn_torch(*ref)
    out_t.backward()
    np.testing.assert_allclose(out.value, out_t.detach().numpy(), rtol=1e-12, atol=1e-12)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-10, atol=1e-12)


UNARY = {
    "exp": (lambda x: x.exp(), torch.exp),
    "log": (lambda x: (x * x + 1.0).log(), lambda x: (x * x + 1.0).log()),
    "relu": (lambda x: x.relu(), torch.relu),
    "sigmoid": (lambda x: x.sigmoid(), torch.sigmoid),
    "tanh": (lambda x: x.tanh(), torch.tanh),
    "gelu": (lambda x: x.gelu(), F.gelu),
    "pow": (lambda x: x ** 3, lambda x: x ** 3),
    "neg": (lambda x: -x, lambda x: -x),
    "log_softmax": (lambda x: x.log_softmax(axis=1), lambda x: x.log_softmax(dim=1)),
    "transpose": (lambda x: x.transpose(1, 0), lambda x: x.transpose(1, 0)),
    "reshape": (lambda x: x.reshape(4, 3), lambda x: x.reshape(4, 3)),
    "mean_axis0": (lambda x: x.mean(axis=0), lambda x: x.mean(dim=0)),
    "sum_keepdims": (lambda x: x.sum(axis=1, keepdims=True), lambda x: x.sum(dim=1, keepdim=True)),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_ops_equal_torch(name):
    ours, ref = UNARY[name]
    x = RNG.normal(size=(3, 4)) * 2
    w = RNG.normal(size=ours(Tensor(x)).shape)          # random upstream gradient
    _both(lambda a: (ours(a) * w).sum(), lambda a: (ref(a) * torch.tensor(w)).sum(), x)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_broadcasting_binary_ops_equal_torch(op):
    """(2, 3, 4) with (3, 1): the gradient of the small operand is summed over broadcast axes."""
    a, b = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(3, 1)) + 3.0
    f = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y,
         "mul": lambda x, y: x * y, "div": lambda x, y: x / y}[op]
    w = RNG.normal(size=(2, 3, 4))
    _both(lambda x, y: (f(x, y) * w).sum(), lambda x, y: (f(x, y) * torch.tensor(w)).sum(), a, b)
    # and with the constant on the left (radd / rsub / rmul / rtruediv)
    _both(lambda x: (f(2.0, x) * w[0, :, :1]).sum(), lambda x: (f(2.0, x) * torch.tensor(w[0, :, :1])).sum(), b)


def test_matmul_batched_equals_torch():
    a, b = RNG.normal(size=(2, 3, 5)), RNG.normal(size=(5, 4))
    _both(lambda x, y: ((x @ y) ** 2).mean(), lambda x, y: ((x @ y) ** 2).mean(), a, b)


def test_unbroadcast_shapes():
    g = np.ones((2, 3, 4))
    assert unbroadcast(g, (3, 1)).shape == (3, 1) and unbroadcast(g, (3, 1))[0, 0] == 8
    assert unbroadcast(g, ()).shape == () and unbroadcast(g, ()) == 24


def test_reused_node_accumulates_and_second_backward_is_fresh():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = x * x
    z = (y + y * x).sum()                 # y used twice: d/dx (x² + x³) = 2x + 3x²
    z.backward()
    np.testing.assert_allclose(x.grad, 2 * x.value + 3 * x.value ** 2)
    x.zero_grad()
    z.backward()                          # intermediates reset: same answer, not doubled
    np.testing.assert_allclose(x.grad, 2 * x.value + 3 * x.value ** 2)


def test_softmax_cross_entropy_equals_torch_and_is_stable():
    logits, y = RNG.normal(size=(6, 5)) * 3, RNG.integers(0, 5, 6)
    _both(lambda z: softmax_cross_entropy(z, y), lambda z: F.cross_entropy(z, torch.tensor(y)), logits)
    big = Tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True)
    loss = softmax_cross_entropy(big, np.array([1]))
    loss.backward()
    assert np.isfinite(loss.value) and abs(loss.value - 1000.0) < 1e-9
    assert np.all(np.isfinite(big.grad))


def test_mlp_gradients_equal_torch_autograd():
    """The place's claim: every parameter gradient of an MLP with softmax-CE equals torch's."""
    mlp = MLP([7, 16, 12, 4], activation="tanh", seed=1)
    x, y = RNG.normal(size=(10, 7)), RNG.integers(0, 4, 10)
    loss = softmax_cross_entropy(mlp(Tensor(x)), y)
    loss.backward()
    params = [torch.tensor(p.value, requires_grad=True) for p in mlp.parameters()]
    h = torch.tensor(x)
    for i in range(0, len(params), 2):
        h = h @ params[i].T + params[i + 1]
        if i < len(params) - 2:
            h = torch.tanh(h)
    loss_t = F.cross_entropy(h, torch.tensor(y))
    loss_t.backward()
    assert abs(loss.value - loss_t.item()) < 1e-12
    for ours, ref in zip(mlp.parameters(), params):
        np.testing.assert_allclose(ours.grad, ref.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_gradient_check_agrees_and_catches_a_wrong_gradient():
    mlp_inputs = [RNG.normal(size=(4, 3)), RNG.normal(size=(5, 3)), RNG.normal(size=(5,))]
    y = RNG.integers(0, 5, 4)

    def f(t):
        x, w, b = t
        return softmax_cross_entropy((x @ w.T + b).gelu().sigmoid() * 3.0, y)
    assert gradient_check(f, mlp_inputs) < 1e-7

    def wrong(t):                          # a deliberately broken op: forward x², backward claims x
        (x,) = t
        return Tensor((x.value ** 2).sum(), parents=(x,), backward=lambda g: x._accumulate(g * x.value))
    assert gradient_check(wrong, [RNG.normal(size=(3,)) + 2.0]) > 0.5


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="scalar"):
        Tensor(np.ones(3), requires_grad=True).backward()
    with pytest.raises(ValueError, match="activation 'swish'"):
        MLP([2, 2], activation="swish")
