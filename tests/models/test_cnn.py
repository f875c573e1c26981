"""CNN backbones: ResNet equal to HF ResNetModel (basic and bottleneck) with copied weights; LeNet-5's
parameter count; the im2col path equal to torch's kernels through whole networks."""
import re

import pytest
import torch

from deepatlas.models.cnn import VGG, LeNet5, ResNet, count_parameters, set_fast

transformers = pytest.importorskip("transformers", reason="transformers not installed: pip install transformers")


def _hf_to_ours(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        k = k.removeprefix("resnet.")
        k = k.replace("embedder.embedder.convolution", "stem.0").replace("embedder.embedder.normalization", "stem.1")
        k = re.sub(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.\2.", k)
        k = k.replace("shortcut.convolution", "shortcut.0").replace("shortcut.normalization", "shortcut.1")
        k = re.sub(r"layer\.(\d+)\.convolution", lambda m: f"conv{int(m[1]) + 1}.0", k)
        k = re.sub(r"layer\.(\d+)\.normalization", lambda m: f"conv{int(m[1]) + 1}.1", k)
        out[k] = v
    return out


@pytest.mark.parametrize("block,depths,widths", [("basic", (2, 1, 2), (8, 12, 16)), ("bottleneck", (2, 2), (4, 8))])
def test_resnet_equals_hf(block, depths, widths):
    torch.manual_seed(0)
    expansion = 4 if block == "bottleneck" else 1
    cfg = transformers.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[w * expansion for w in widths],
                                    depths=list(depths), layer_type=block, hidden_act="relu")
    ref = transformers.ResNetModel(cfg).eval()
    for m in ref.modules():   # non-trivial BN statistics, so the copy of every buffer matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.5, 0.5)
    ours = ResNet(depths, widths, block, in_channels=3, stem_width=8, stem="imagenet").eval()
    missing, unexpected = ours.load_state_dict(_hf_to_ours(ref.state_dict()), strict=False)
    assert set(missing) == {"head.weight", "head.bias"} and not unexpected, (missing, unexpected)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        want = ref(x, output_hidden_states=True)
        feats = ours.features(x)
        torch.testing.assert_close(feats[-1], want.last_hidden_state, atol=1e-5, rtol=1e-5)
        for ours_stage, hf_stage in zip(feats, want.hidden_states[1:]):
            torch.testing.assert_close(ours_stage, hf_stage, atol=1e-5, rtol=1e-5)
        set_fast(ours, False)   # the im2col path through the whole network
        torch.testing.assert_close(ours.features(x)[-1], want.last_hidden_state, atol=1e-4, rtol=1e-4)


def test_lenet_has_its_classic_parameter_count_and_vgg_runs_plain():
    # C1 156 + C3 2 416 + F5 48 120 + F6 10 164 + output 850 (LeCun et al. 1998, with full C3)
    assert count_parameters(LeNet5()) == 61_706
    net = VGG((4, 8), depth=2).eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        fast = net(x)
        torch.testing.assert_close(set_fast(net, False)(x), fast, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="28×28"):
        LeNet5()(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="unknown block"):
        ResNet(block="wide")


def test_projection_shortcut_only_where_the_shape_changes():
    net = ResNet((2, 2), (8, 16))
    assert isinstance(net.stages[0][0].shortcut, torch.nn.Identity)      # 8 -> 8, stride 1: identity
    assert not isinstance(net.stages[1][0].shortcut, torch.nn.Identity)  # 8 -> 16, stride 2: projection
    assert isinstance(net.stages[1][1].shortcut, torch.nn.Identity)
    feats = net.features(torch.randn(2, 1, 28, 28))
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 28, 28), (16, 14, 14)]
