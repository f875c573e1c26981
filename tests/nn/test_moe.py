"""MoE layers: Mixtral's sparse block and aux loss equal HF's; DeepSeek routing and bias balancing."""
from __future__ import annotations

import pytest
import torch

from deepatlas.nn.moe import MoE, Router, expert_load, max_violation, switch_aux_loss

transformers = pytest.importorskip("transformers", reason="transformers not installed: pip install transformers")


def test_mixtral_block_and_aux_loss_equal_hf():
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock, load_balancing_loss_func

    cfg = transformers.MixtralConfig(hidden_size=16, intermediate_size=24, num_local_experts=6,
                                     num_experts_per_tok=2, router_jitter_noise=0.0)
    torch.manual_seed(0)
    hf = MixtralSparseMoeBlock(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.3)
    ours = MoE(16, 24, 6, 2, router="softmax", balance="aux")
    ours.load_state_dict(hf.state_dict(), strict=False)
    x = torch.randn(3, 7, 16)
    out = hf(x)
    torch.testing.assert_close(ours(x), out[0] if isinstance(out, tuple) else out, rtol=1e-5, atol=1e-6)
    logits = x.reshape(-1, 16) @ ours.gate.weight.t()
    torch.testing.assert_close(ours.aux_loss, load_balancing_loss_func((logits,), 6, 2), rtol=1e-5, atol=1e-6)


def test_sigmoid_router_gates_ignore_the_bias_and_groups_limit_choice():
    torch.manual_seed(0)
    r = Router(8, 8, 2, "sigmoid", n_group=2, topk_group=1, routed_scale=2.0)
    x = torch.randn(50, 8)
    index, gates, _ = r(x)
    assert ((index // 4)[:, 0] == (index // 4)[:, 1]).all()          # both experts from one group
    torch.testing.assert_close(gates.sum(-1), torch.full((50,), 2.0))  # normalised × routed scale
    # a huge bias on expert 5 makes it chosen everywhere, but its gate value stays s_5-based
    r2 = Router(8, 8, 2, "sigmoid")
    r2.weight.data.copy_(r.weight.data)
    r2.e_score_correction_bias[5] = 10.0
    index2, gates2, _ = r2(x)
    assert (index2 == 5).any(-1).all()
    s = torch.sigmoid(x @ r.weight.t())
    chosen = s.gather(1, index2)
    torch.testing.assert_close(gates2, chosen / chosen.sum(-1, keepdim=True))


def test_bias_update_moves_against_the_load():
    moe = MoE(8, 8, 4, 1, router="sigmoid", balance="bias", bias_rate=0.1)
    moe.load = torch.tensor([10.0, 2.0, 2.0, 2.0])
    moe.update_bias()
    torch.testing.assert_close(moe.gate.e_score_correction_bias, torch.tensor([-0.1, 0.1, 0.1, 0.1]))
    assert max_violation(torch.tensor([4.0, 4.0, 4.0, 4.0])) == 0.0
    assert max_violation(expert_load(torch.tensor([[0], [0], [0], [1]]), 2)) == pytest.approx(0.5)


def test_switch_loss_is_one_when_balanced():
    # uniform router probabilities and an even split: E · Σ_i (1/E)(1/E) = 1
    index = torch.arange(8).remainder(4)[:, None]
    probs = torch.full((8, 4), 0.25)
    torch.testing.assert_close(switch_aux_loss(index, probs, 4), torch.tensor(1.0))
    with pytest.raises(ValueError, match="sigmoid"):
        MoE(8, 8, 4, 1, router="softmax", balance="bias")
