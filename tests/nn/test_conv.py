"""im2col conv2d and pooling against torch (forward and backward), and the size/receptive-field calculator."""
import pytest
import torch
import torch.nn.functional as F

from deepatlas.nn.conv import (AvgPool2d, Conv2d, Layer, MaxPool2d, avg_pool2d, conv2d, conv_output_size, im2col,
                               max_pool2d, receptive_field)

CASES = [  # (C_in, C_out, kernel, stride, padding, dilation, groups, H, W)
    (3, 4, 3, 1, 0, 1, 1, 9, 9),
    (3, 6, 3, 2, 1, 1, 1, 10, 7),
    (4, 8, (3, 5), (2, 1), (1, 2), 1, 2, 11, 12),
    (2, 4, 3, 1, 2, 2, 1, 9, 9),
    (6, 6, 3, 1, 1, 1, 6, 8, 8),          # depthwise
    (4, 6, 1, 2, 0, 1, 2, 7, 7),
    (1, 2, 5, 3, 2, (2, 1), 1, 15, 13),
]


def _grads(fn, *tensors):
    ts = [t.detach().clone().requires_grad_(True) if t is not None else None for t in tensors]
    y = fn(*ts)
    (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
    return y.detach(), [t.grad for t in ts if t is not None]


@pytest.mark.parametrize("c_in,c_out,k,s,p,d,g,H,W", CASES)
def test_conv2d_forward_and_backward_equal_torch(c_in, c_out, k, s, p, d, g, H, W):
    torch.manual_seed(0)
    kh, kw = (k, k) if isinstance(k, int) else k
    x = torch.randn(2, c_in, H, W, dtype=torch.float64)
    w = torch.randn(c_out, c_in // g, kh, kw, dtype=torch.float64)
    b = torch.randn(c_out, dtype=torch.float64)
    ours, ours_g = _grads(lambda *t: conv2d(*t, stride=s, padding=p, dilation=d, groups=g), x, w, b)
    ref, ref_g = _grads(lambda *t: F.conv2d(*t, stride=s, padding=p, dilation=d, groups=g), x, w, b)
    torch.testing.assert_close(ours, ref)
    for a, r in zip(ours_g, ref_g):   # dL/dx, dL/dW, dL/db
        torch.testing.assert_close(a, r)


def test_im2col_equals_unfold():
    x = torch.randn(2, 3, 9, 8)
    torch.testing.assert_close(im2col(x, (3, 2), (2, 1), (1, 0), (1, 2)),
                               F.unfold(x, (3, 2), dilation=(1, 2), padding=(1, 0), stride=(2, 1)))


@pytest.mark.parametrize("k,s,p,d", [(2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 2), ((2, 3), (1, 2), 0, 1)])
def test_max_pool_forward_backward_equal_torch(k, s, p, d):
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64)
    ours, og = _grads(lambda t: max_pool2d(t, k, s, p, d), x)
    ref, rg = _grads(lambda t: F.max_pool2d(t, k, s, p, d), x)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(og[0], rg[0])


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_avg_pool_forward_backward_equal_torch(k, s, p):
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64)
    ours, og = _grads(lambda t: avg_pool2d(t, k, s, p), x)
    ref, rg = _grads(lambda t: F.avg_pool2d(t, k, s, p), x)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(og[0], rg[0])


def test_modules_plain_equal_fast_and_load_torch_weights():
    ref = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    ours = Conv2d(4, 6, 3, stride=2, padding=1, groups=2, fast=False)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 4, 8, 8)
    torch.testing.assert_close(ours(x), ref(x))
    assert torch.equal(MaxPool2d(2, fast=False)(x), MaxPool2d(2)(x))
    torch.testing.assert_close(AvgPool2d(3, 1, 1, fast=False)(x), AvgPool2d(3, 1, 1)(x))


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="groups=3"):
        conv2d(torch.randn(1, 4, 5, 5), torch.randn(4, 2, 3, 3), groups=3)
    with pytest.raises(ValueError, match="no output position"):
        conv_output_size(3, 5)
    with pytest.raises(ValueError, match="stride=0"):
        im2col(torch.randn(1, 1, 4, 4), 2, stride=0)


def test_output_size_matches_torch_and_receptive_fields_match_known_nets():
    for n, k, s, p, d in [(28, 5, 1, 2, 1), (224, 7, 2, 3, 1), (17, 3, 2, 0, 2), (10, 4, 3, 1, 1)]:
        assert conv_output_size(n, k, s, p, d) == F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k),
                                                           stride=s, padding=p, dilation=d).shape[-1]
    # AlexNet to pool5: 195 pixels; VGG-16 to pool5: 212 (Araujo et al. 2019, Distill, table of nets)
    alexnet = [Layer(11, 4), Layer(3, 2), Layer(5, 1, 2), Layer(3, 2), Layer(3, 1, 1), Layer(3, 1, 1),
               Layer(3, 1, 1), Layer(3, 2)]
    assert receptive_field(alexnet)[-1]["receptive_field"] == 195
    vgg16 = []
    for convs in (2, 2, 3, 3, 3):
        vgg16 += [Layer(3, 1, 1)] * convs + [Layer(2, 2)]
    last = receptive_field(vgg16)[-1]
    assert last["receptive_field"] == 212 and last["jump"] == 32


def test_receptive_field_equals_the_pixels_a_unit_depends_on():
    # the calculator against autograd: which input pixels get a nonzero gradient from one output unit
    layers = [Layer(3, 1, 1), Layer(2, 2), Layer(3, 1, 1, 2), Layer(3, 2, 1)]
    x = torch.randn(1, 1, 40, 40, requires_grad=True)
    y = x
    for layer in layers:
        w = torch.ones(1, 1, layer.kernel, layer.kernel)
        y = conv2d(y, w, stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    y[0, 0, 4, 4].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero().flatten()
    rf = receptive_field(layers)[-1]
    assert rows.max() - rows.min() + 1 == rf["receptive_field"]
    assert (rows.max() + rows.min() + 1) / 2 == rf["start"] + 4 * rf["jump"]   # centre of unit 4's field
