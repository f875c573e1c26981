"""Feed-forward: formulas written out by hand, SwiGLU equals HF LlamaMLP with copied weights."""
import pytest
import torch

from deepatlas.foundations.activations import get_activation
from deepatlas.nn.ffn import FeedForward

close = torch.testing.assert_close


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
def test_ffn_formula(activation):
    torch.manual_seed(0)
    ffn = FeedForward(8, 32, activation)
    x = torch.randn(3, 5, 8)
    a = x @ ffn.up_proj.weight.T + ffn.up_proj.bias
    h = get_activation(activation)(a)  # the F2 from-formula versions (x Φ(x), tanh form, max(0, x))
    close(ffn(x), h @ ffn.down_proj.weight.T + ffn.down_proj.bias, atol=1e-5, rtol=1e-5)


def test_swiglu_equals_hf_llama_mlp():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    torch.manual_seed(1)
    ref = LlamaMLP(LlamaConfig(hidden_size=16, intermediate_size=40, hidden_act="silu", num_attention_heads=2, num_key_value_heads=2))
    ours = FeedForward(16, 40, "swiglu", bias=False)
    ours.load_state_dict(ref.state_dict())  # same names: gate_proj, up_proj, down_proj
    x = torch.randn(2, 7, 16)
    close(ours(x), ref(x))


def test_unknown_activation_lists_valid():
    with pytest.raises(ValueError, match="swiglu"):
        FeedForward(4, 8, "tanh")
