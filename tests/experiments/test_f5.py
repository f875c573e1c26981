"""F5: the gradient-norm measurement is the true ∂L/∂W, the nets are what they say, the claim holds."""
import torch
from torch import nn

from deepatlas.foundations.gradients import ResidualMLP, deep_net, layer_gradient_norms, net_linears


def test_layer_gradient_norms_equal_autograd_grad():
    torch.manual_seed(0)
    x, y = torch.randn(16, 12), torch.randint(0, 3, (16,))
    for kind in ("sigmoid", "relu", "residual"):
        net = deep_net(kind, 12, 3, width=8, depth=4)
        norms = layer_gradient_norms(net, x, y)
        weights = [lin.weight for lin in net_linears(net)]
        assert len(norms) == 6 if kind == "residual" else len(norms) == 5
        grads = torch.autograd.grad(nn.functional.cross_entropy(net(x), y), weights)
        torch.testing.assert_close(torch.tensor(norms), torch.stack([g.norm() for g in grads]))


def test_residual_block_is_identity_plus_branch():
    torch.manual_seed(0)
    net = ResidualMLP(5, 2, width=4, depth=1)
    x = torch.randn(3, 5)
    h = net.input(x)
    ln = nn.functional.layer_norm(h, (4,), net.norms[0].weight, net.norms[0].bias, eps=1e-5)
    h = h + net.blocks[0](torch.relu(ln))          # h_1 = h_0 + W relu(LN(h_0))
    out = net.output(nn.functional.layer_norm(h, (4,), net.final_norm.weight, net.final_norm.bias))
    torch.testing.assert_close(net(x), out)


def test_plain_init_matches_glorot_and_he_variance():
    sig = deep_net("sigmoid", 400, 10, width=400, depth=2)
    relu = deep_net("relu", 400, 10, width=400, depth=2)
    w_sig, w_relu = sig.linears[1].weight, relu.linears[1].weight       # 400 × 400
    assert abs(w_sig.var().item() - 2 / 800) < 2e-4                     # Var = 2 / (in + out)
    assert abs(w_relu.var().item() - 2 / 400) < 4e-4                    # Var = 2 / in


def test_f5_quick_holds(run_quick):
    s = run_quick("vanishing-gradients")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["sigmoid_first_over_last_init"] < 1e-3
    assert 0.1 < m["residual_first_over_last_init"] < 10
