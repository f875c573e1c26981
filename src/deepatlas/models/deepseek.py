"""DeepSeek-V3 (DeepSeek-AI 2024): MLA attention, DeepSeekMoE, multi-token prediction (map place L6).

    h'_l = h_{l-1} + MLA(RMSNorm(h_{l-1}))                    deepatlas.nn.mla
    h_l  = h'_l + FFN(RMSNorm(h'_l))                           dense SwiGLU for the first
                                                               first_k_dense layers, DeepSeekMoE after
    P(t_{i+1} | t_≤i) = softmax(W_out RMSNorm(h_L))

Multi-token prediction (§2.2, eq. 21-25): D sequential modules; module k combines the previous
depth's representation of token i with the embedding of token i+k and runs one more block,
    h'^k_i = M_k [RMSNorm(h^{k-1}_i) ; RMSNorm(Emb(t_{i+k}))]       (M_k: 2d -> d)
    h^k_i  = TRM_k(h'^k_i),   P^k_{i+k+1} = OutHead(h^k_i)          (embedding and head shared)
    L_MTP  = λ/D Σ_k CE(P^k, t_{·+k+1})
At inference the MTP module can draft the token after next for self-speculative decoding.
Module names follow Hugging Face's DeepseekV3ForCausalLM, so its state dict loads (`from_hf`);
the MTP modules are ours (HF's model drops them).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.nn.ffn import FeedForward
from deepatlas.nn.mla import LatentCache, MultiHeadLatentAttention
from deepatlas.nn.moe import MoE
from deepatlas.nn.norms import RMSNorm


@dataclass
class DeepSeekConfig:
    vocab_size: int = 129280
    d_model: int = 7168
    n_layer: int = 61
    n_head: int = 128
    q_lora_rank: int | None = 1536
    kv_lora_rank: int = 512
    qk_nope_dim: int = 128
    qk_rope_dim: int = 64
    v_dim: int = 128
    d_ff: int = 18432              # dense layers' SwiGLU width
    moe_d_ff: int = 2048           # each routed / shared expert's width
    n_routed: int = 256
    n_shared: int = 1
    top_k: int = 8
    n_group: int = 8
    topk_group: int = 4
    routed_scale: float = 2.5
    first_k_dense: int = 3
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_interleave: bool = True
    max_len: int = 4096
    balance: str = "bias"          # none | aux | bias (auxiliary-loss-free)
    bias_rate: float = 1e-3        # γ of the bias update
    n_mtp: int = 0                 # multi-token prediction depth D (DeepSeek-V3: 1)

    @classmethod
    def from_hf(cls, hf) -> DeepSeekConfig:
        """From a transformers DeepseekV3Config (rotary dim = its head_dim = qk_rope_head_dim)."""
        rope = getattr(hf, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"rope_type {rope['rope_type']!r} (YaRN etc.) is not built here; use 'default'")
        return cls(vocab_size=hf.vocab_size, d_model=hf.hidden_size, n_layer=hf.num_hidden_layers,
                   n_head=hf.num_attention_heads, q_lora_rank=hf.q_lora_rank, kv_lora_rank=hf.kv_lora_rank,
                   qk_nope_dim=hf.qk_nope_head_dim, qk_rope_dim=hf.qk_rope_head_dim, v_dim=hf.v_head_dim,
                   d_ff=hf.intermediate_size, moe_d_ff=hf.moe_intermediate_size, n_routed=hf.n_routed_experts,
                   n_shared=hf.n_shared_experts, top_k=hf.num_experts_per_tok, n_group=hf.n_group,
                   topk_group=hf.topk_group, routed_scale=hf.routed_scaling_factor,
                   first_k_dense=hf.first_k_dense_replace, norm_eps=hf.rms_norm_eps,
                   rope_theta=rope.get("rope_theta", 10000.0), rope_interleave=hf.rope_interleave,
                   max_len=hf.max_position_embeddings, n_mtp=0)


class DeepSeekBlock(nn.Module):
    def __init__(self, cfg: DeepSeekConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.self_attn = MultiHeadLatentAttention(
            cfg.d_model, cfg.n_head, cfg.kv_lora_rank, cfg.q_lora_rank, cfg.qk_nope_dim, cfg.qk_rope_dim,
            cfg.v_dim, cfg.rope_theta, cfg.rope_interleave, cfg.norm_eps, cfg.max_len)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        if layer < cfg.first_k_dense:
            self.mlp = FeedForward(cfg.d_model, cfg.d_ff, "swiglu", bias=False)
        else:
            self.mlp = MoE(cfg.d_model, cfg.moe_d_ff, cfg.n_routed, cfg.top_k, cfg.n_shared, "sigmoid",
                           cfg.n_group, cfg.topk_group, cfg.routed_scale, True, cfg.balance, cfg.bias_rate)

    def forward(self, x: Tensor, cache: LatentCache | None = None, layer: int = 0, pos: int = 0,
                absorbed: bool = False) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cache=cache, layer=layer, pos=pos, absorbed=absorbed)
        return x + self.mlp(self.post_attention_layernorm(x))


class MTPModule(nn.Module):
    """One multi-token-prediction depth: [RMSNorm(h); RMSNorm(Emb(t_{i+k}))] -> M_k -> block."""

    def __init__(self, cfg: DeepSeekConfig):
        super().__init__()
        self.hidden_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.embed_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.proj = nn.Linear(2 * cfg.d_model, cfg.d_model, bias=False)        # M_k
        self.block = DeepSeekBlock(cfg, layer=cfg.first_k_dense)                 # an MoE block

    def forward(self, h: Tensor, next_embed: Tensor) -> Tensor:
        # h'^k_i = M_k [RMSNorm(h^{k-1}_i); RMSNorm(Emb(t_{i+k}))]           (B, T, d)
        return self.block(self.proj(torch.cat([self.hidden_norm(h), self.embed_norm(next_embed)], dim=-1)))


class DeepSeek(nn.Module):
    def __init__(self, cfg: DeepSeekConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(DeepSeekBlock(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.mtp = nn.ModuleList(MTPModule(cfg) for _ in range(cfg.n_mtp))
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)

    @property
    def context_length(self) -> int:
        return self.config.max_len

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def moe_layers(self) -> list[MoE]:
        return [m for m in self.modules() if isinstance(m, MoE)]

    def new_cache(self, batch: int, max_len: int | None = None) -> LatentCache:
        """MLA's cache: (r + d_r) numbers per token and layer."""
        cfg, w = self.config, self.lm_head.weight
        return LatentCache(cfg.n_layer, batch, max_len or cfg.max_len, cfg.kv_lora_rank, cfg.qk_rope_dim,
                           dtype=w.dtype, device=w.device)

    def hidden(self, idx: Tensor, cache: LatentCache | None = None, absorbed: bool = False) -> Tensor:
        """idx (B, T) -> h_L (B, T, d), before the final norm; with a cache, after cache.length positions."""
        pos = cache.length if cache is not None else 0
        if pos + idx.size(1) > self.config.max_len:
            raise ValueError(f"positions up to {pos + idx.size(1) - 1} exceed max_len {self.config.max_len}")
        x = self.embed_tokens(idx)
        for i, layer in enumerate(self.layers):
            x = layer(x, cache=cache, layer=i, pos=pos, absorbed=absorbed)
        return x

    def forward(self, idx: Tensor, cache: LatentCache | None = None, absorbed: bool = False) -> Tensor:
        """idx (B, T) -> logits (B, T, vocab)."""
        return self.lm_head(self.norm(self.hidden(idx, cache, absorbed)))

    def mtp_logits(self, h: Tensor, idx: Tensor) -> list[Tensor]:
        """Logits of each MTP depth k = 1..D: entry k−1 (B, T−k, vocab) predicts t_{i+k+1} at i."""
        out = []
        for k, module in enumerate(self.mtp, start=1):
            h = module(h[:, :-1] if k > 1 else h[:, :idx.size(1) - k], self.embed_tokens(idx[:, k:]))
            out.append(self.lm_head(self.norm(h)))
        return out


def deepseek_loss(model: DeepSeek, batch: tuple[Tensor, Tensor], mtp_weight: float = 0.3,
                  aux_weight: float = 0.0) -> Tensor:
    """Next-token CE + λ/D Σ_k CE of the MTP depths (eq. 25) + α Σ_layers L_aux (balance='aux')."""
    x, y = batch
    h = model.hidden(x)
    loss = F.cross_entropy(model.lm_head(model.norm(h)).flatten(0, 1), y.flatten())
    if model.mtp:
        # depth k at position i predicts t_{i+k+1} = y[:, i+k]
        mtp = [F.cross_entropy(lg.flatten(0, 1), y[:, k:].flatten())
               for k, lg in enumerate(model.mtp_logits(h, x), start=1)]
        loss = loss + mtp_weight * torch.stack(mtp).mean()
    if aux_weight > 0:
        loss = loss + aux_weight * sum(m.aux_loss for m in model.moe_layers())
    return loss


def from_hf(hf_model) -> DeepSeek:
    """Our DeepSeek with the weights of a transformers DeepseekV3ForCausalLM (same module names)."""
    cfg = DeepSeekConfig.from_hf(hf_model.config)
    model = DeepSeek(cfg)
    sd = {k.removeprefix("model."): v for k, v in hf_model.state_dict().items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"HF DeepseekV3 weights do not map: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model
