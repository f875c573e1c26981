"""Mixture-of-experts feed-forward layers: Mixtral's top-2 softmax MoE and DeepSeekMoE.

Routed experts are SwiGLU FFNs; a token goes to k of E experts and the layer returns
    y = Σ_{i ∈ TopK} g_i · FFN_i(x)  (+ Σ_j FFN_j^shared(x) for DeepSeekMoE's shared experts)

Mixtral (Jiang et al. 2024, eq. 1-2): g = softmax(TopK(x W_g)) — the softmax over all experts,
    top-k kept and renormalised (HF MixtralTopKRouter).
DeepSeekMoE (Dai et al. 2024; DeepSeek-V3 §2.1.2 eq. 12-16): many fine-grained routed experts plus
    always-on shared ones; affinity s_i = σ(u·e_i), the top-k chosen on s_i + b_i, gates
    g_i = s_i / Σ_{j ∈ TopK} s_j × routed scale; with group-limited routing (experts in n_group
    groups, a group scored by its top-2 affinities, only topk_group groups eligible).
Balancing:
    aux loss (Switch Transformer, Fedus et al. 2022 eq. 4-6):  L_aux = α · E · Σ_i f_i P_i,
        f_i = share of the top-k assignments that went to expert i, P_i = mean router probability;
    auxiliary-loss-free (Wang et al. 2024; DeepSeek-V3 eq. 16): the bias b_i enters the choice
        only, never the gate value, and after each step b_i ← b_i + γ · sign(ē − c_i), with c_i the
        tokens expert i received and ē their mean — overloaded experts become less likely.
Weight names and layouts are Hugging Face's (gate.weight, experts.gate_up_proj (E, 2I, d),
experts.down_proj (E, d, I), shared_experts.*, gate.e_score_correction_bias), so Mixtral and
DeepSeek-V3 checkpoints load as they are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.nn.ffn import FeedForward

ROUTERS = ("softmax", "sigmoid")


class Experts(nn.Module):
    """E SwiGLU experts in two stacked weights; forward(x (N, d), index (N, k), gates (N, k)) -> (N, d)."""

    def __init__(self, n_experts: int, d_model: int, d_ff: int):
        super().__init__()
        self.n_experts = n_experts
        self.gate_up_proj = nn.Parameter(torch.randn(n_experts, 2 * d_ff, d_model) * 0.02)   # [W; V]
        self.down_proj = nn.Parameter(torch.randn(n_experts, d_model, d_ff) * 0.02)          # W₂

    def forward(self, x: Tensor, index: Tensor, gates: Tensor) -> Tensor:
        out = torch.zeros_like(x)
        for e in index.unique().tolist():          # only the experts some token chose
            token, slot = torch.where(index == e)                                  # (n_e,), (n_e,)
            gate, up = F.linear(x[token], self.gate_up_proj[e]).chunk(2, dim=-1)  # (n_e, I) each
            # FFN_e(x) = (Swish(x W) ⊙ x V) W₂, weighted by g_e
            y = F.linear(F.silu(gate) * up, self.down_proj[e])                     # (n_e, d)
            out.index_add_(0, token, y * gates[token, slot, None].to(y.dtype))
        return out


class Router(nn.Module):
    """x (N, d) -> (expert index (N, k), gate values (N, k), router probabilities (N, E))."""

    def __init__(self, d_model: int, n_experts: int, top_k: int, kind: str = "softmax",
                 n_group: int = 1, topk_group: int = 1, routed_scale: float = 1.0, normalize: bool = True):
        super().__init__()
        if kind not in ROUTERS:
            raise ValueError(f"router {kind!r}; valid: {', '.join(ROUTERS)}")
        if not 1 <= top_k <= n_experts or n_experts % n_group or not 1 <= topk_group <= n_group:
            raise ValueError(f"need 1 ≤ top_k {top_k} ≤ n_experts {n_experts}, n_group {n_group} "
                             f"dividing n_experts and 1 ≤ topk_group {topk_group} ≤ n_group")
        self.kind, self.top_k, self.n_experts = kind, top_k, n_experts
        self.n_group, self.topk_group, self.routed_scale, self.normalize = n_group, topk_group, routed_scale, normalize
        self.weight = nn.Parameter(torch.randn(n_experts, d_model) * 0.02)         # e_i (rows)
        # b_i: enters the top-k choice only (auxiliary-loss-free balancing); not a parameter
        self.register_buffer("e_score_correction_bias", torch.zeros(n_experts))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits = F.linear(x.float(), self.weight.float())                          # (N, E)
        if self.kind == "softmax":
            # Mixtral: p = softmax(x W_g); keep the top-k and renormalise
            probs = logits.softmax(dim=-1)
            gates, index = probs.topk(self.top_k, dim=-1)
            return index, gates / gates.sum(dim=-1, keepdim=True), probs
        # DeepSeek-V3 eq. (15): s_i = σ(u·e_i); choose on s_i + b_i
        scores = logits.sigmoid()
        choice = scores + self.e_score_correction_bias
        if self.n_group > 1:   # group-limited routing: a group's score is the sum of its top-2
            grouped = choice.view(-1, self.n_group, self.n_experts // self.n_group)
            group_score = grouped.topk(min(2, grouped.size(-1)), dim=-1).values.sum(-1)   # (N, G)
            keep = torch.zeros_like(group_score, dtype=torch.bool).scatter_(
                1, group_score.topk(self.topk_group, dim=-1).indices, True)
            choice = choice.masked_fill(~keep.repeat_interleave(self.n_experts // self.n_group, 1), float("-inf"))
        index = choice.topk(self.top_k, dim=-1).indices                            # (N, k)
        gates = scores.gather(1, index)                                            # s_i, no bias
        if self.normalize:   # g_i = s_i / Σ_{TopK} s_j
            gates = gates / (gates.sum(dim=-1, keepdim=True) + 1e-20)
        return index, gates * self.routed_scale, scores / scores.sum(dim=-1, keepdim=True)


def switch_aux_loss(index: Tensor, probs: Tensor, n_experts: int) -> Tensor:
    """E · Σ_i f_i P_i (Fedus et al. 2022 eq. 4), f_i over the top-k assignments (HF's convention:
    equals transformers' load_balancing_loss_func for one layer)."""
    # f_i: (k, E) one-hot of each slot's choice, averaged over tokens
    f = F.one_hot(index, n_experts).float().mean(dim=0)                            # (k, E)
    return n_experts * (f * probs.mean(dim=0)).sum()


def expert_load(index: Tensor, n_experts: int) -> Tensor:
    """Tokens each expert received (E,) from the (N, k) choices."""
    return torch.bincount(index.flatten(), minlength=n_experts).float()


def max_violation(load: Tensor) -> float:
    """MaxVio = (max_i c_i − ē) / ē (Wang et al. 2024): 0 for a perfectly even load."""
    mean = load.float().mean()
    return float((load.max() - mean) / mean.clamp_min(1e-9))


class MoE(nn.Module):
    """(..., d) -> (..., d). balance: 'none', 'aux' (Switch loss in self.aux_loss) or 'bias'
    (call update_bias() after each step). The last routing's load is kept in self.load."""

    def __init__(self, d_model: int, d_ff: int, n_experts: int, top_k: int, n_shared: int = 0,
                 router: str = "softmax", n_group: int = 1, topk_group: int = 1,
                 routed_scale: float = 1.0, normalize: bool = True, balance: str = "none",
                 bias_rate: float = 1e-3):
        super().__init__()
        if balance not in ("none", "aux", "bias"):
            raise ValueError(f"balance {balance!r}; valid: none, aux, bias")
        if balance == "bias" and router != "sigmoid":
            raise ValueError("bias balancing shifts DeepSeek's sigmoid scores; use router='sigmoid'")
        self.gate = Router(d_model, n_experts, top_k, router, n_group, topk_group, routed_scale, normalize)
        self.experts = Experts(n_experts, d_model, d_ff)
        # shared experts: one SwiGLU FFN of width n_shared · d_ff (HF DeepseekV3MoE.shared_experts)
        self.shared_experts = FeedForward(d_model, n_shared * d_ff, "swiglu", bias=False) if n_shared else None
        self.balance, self.bias_rate = balance, bias_rate
        self.load = torch.zeros(n_experts)
        self.aux_loss = torch.zeros(())

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])                                            # (N, d)
        index, gates, probs = self.gate(flat)
        self.load = expert_load(index.detach(), self.gate.n_experts)
        if self.balance == "aux":
            self.aux_loss = switch_aux_loss(index, probs, self.gate.n_experts)
        y = self.experts(flat, index, gates).view(shape)
        if self.shared_experts is not None:
            y = y + self.shared_experts(x)
        return y

    @torch.no_grad()
    def update_bias(self) -> None:
        """b_i ← b_i + γ · sign(ē − c_i) from the last routing (DeepSeek-V3 §2.1.2)."""
        bias = self.gate.e_score_correction_bias
        bias += self.bias_rate * torch.sign(self.load.mean() - self.load).to(bias)
