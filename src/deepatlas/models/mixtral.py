"""Mixtral: a LLaMA whose every feed-forward is a sparse mixture of experts (map place L6).

Jiang et al. 2024 ("Mixtral of Experts"), §2.1: each token's FFN output is

    y = Σ_{i ∈ TopK(x W_g)} softmax(TopK(x W_g))_i · SwiGLU_i(x)          (eq. 1-2, K = 2 of 8)

so a token uses 2 experts' weights while the model holds 8: compute of a 13B model, weights of a
47B one. Everything else — RMSNorm, RoPE, grouped-query attention, the untied head — is the
LLaMA of models/llama.py; the MoE layer is deepatlas.nn.moe.MoE (router="softmax"), whose
parameter names are HF's (gate.weight, experts.gate_up_proj (E, 2I, d), experts.down_proj (E, d, I)).
Checked: logits equal transformers' MixtralForCausalLM on a tiny random config (tests/models/test_mixtral.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from deepatlas.models.llama import Llama, LlamaConfig, _load, _name_map
from deepatlas.nn.moe import MoE


@dataclass
class MixtralConfig(LlamaConfig):
    n_experts: int = 8           # E routed experts per layer
    top_k: int = 2               # K experts per token

    @classmethod
    def from_hf(cls, hf: Any) -> MixtralConfig:
        """From a transformers MixtralConfig."""
        base = LlamaConfig.from_hf(hf)
        return cls(**{**base.__dict__, "n_experts": hf.num_local_experts, "top_k": hf.num_experts_per_tok})


class Mixtral(Llama):
    """Llama blocks with each `ffn` a top-k softmax MoE; the forward and KV cache are Llama's."""

    def __init__(self, cfg: MixtralConfig):
        super().__init__(cfg)
        for block in self.blocks:
            # the dense SwiGLU Llama built is replaced: E SwiGLU experts behind a router
            block.ffn = MoE(cfg.dim, cfg.ffn_dim, cfg.n_experts, cfg.top_k, router="softmax", balance="aux")

    def aux_loss(self) -> Tensor:
        """Σ over layers of the Switch/GShard load-balancing loss of the last forward (Fedus et al. 2022 eq. 4)."""
        return sum(block.ffn.aux_loss for block in self.blocks)


def from_hf_state_dict(sd: dict[str, Tensor], cfg: MixtralConfig) -> Mixtral:
    """Our Mixtral with the weights of a transformers MixtralForCausalLM state dict."""
    names = {ours: hf for ours, hf in _name_map(cfg, 0).items() if ".ffn." not in ours}
    for i in range(cfg.n_layer):
        for part in ("gate.weight", "experts.gate_up_proj", "experts.down_proj"):
            names[f"blocks.{i}.ffn.{part}"] = f"model.layers.{i}.mlp.{part}"
    model = Mixtral(cfg)
    weights = {ours: sd[hf] for ours, hf in names.items()}
    for i, block in enumerate(model.blocks):   # the balancing bias (DeepSeek's, L6) stays 0: Mixtral has none
        weights[f"blocks.{i}.ffn.gate.e_score_correction_bias"] = block.ffn.gate.e_score_correction_bias
    _load(model, weights)
    return model.eval()
