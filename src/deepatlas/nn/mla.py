"""Multi-head latent attention (DeepSeek-V2 §2.1, DeepSeek-V3 §2.1.1) and KV-cache sizes.

MLA caches one low-rank latent per token instead of per-head keys and values:

    c_t^KV = RMSNorm(W^DKV h_t)                   (r = kv_lora_rank)          eq. (1)
    [k_{t,i}^C ; v_{t,i}^C] = W^UK_i c_t^KV, W^UV_i c_t^KV                    eq. (2)-(3)
    k_t^R = RoPE(W^KR h_t)                        one decoupled rope key shared by all heads
    c_t^Q = RMSNorm(W^DQ h_t),  [q_{t,i}^C ; q_{t,i}^R] = W^UQ_i c_t^Q, RoPE(W^QR_i c_t^Q)
    o_{t,i} = Σ_s softmax_s((q_{t,i}^C·k_{s,i}^C + q_{t,i}^R·k_s^R) / √(d_n + d_r)) v_{s,i}^C
    u_t = W^O [o_{t,1}; ...; o_{t,H}]

Absorbed form (DeepSeek-V2 §2.1.2): q^C·(W^UK c) = (W^UKᵀ q^C)·c and Σ p_s W^UV c_s = W^UV Σ p_s c_s,
so attention runs in the r-dim latent space over the cache (c^KV, k^R) without ever expanding
per-head keys or values — the same outputs (tests/nn/test_mla.py), (r + d_r) numbers per token.
Weight names and layouts follow Hugging Face's DeepseekV3Attention, so its weights load as they are.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from deepatlas.nn.attention import scaled_dot_product
from deepatlas.nn.norms import RMSNorm
from deepatlas.nn.positions import RotaryEmbedding


class LatentCache:
    """Per layer: latents c^KV (B, max_len, r) and rope keys k^R (B, max_len, d_r) — all MLA keeps."""

    def __init__(self, n_layer: int, batch: int, max_len: int, kv_lora_rank: int, rope_dim: int,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        self.latent = [torch.zeros(batch, max_len, kv_lora_rank, dtype=dtype, device=device)
                       for _ in range(n_layer)]
        self.k_rope = [torch.zeros(batch, max_len, rope_dim, dtype=dtype, device=device)
                       for _ in range(n_layer)]
        self.lengths = [0] * n_layer
        self.max_len = max_len

    @property
    def length(self) -> int:
        return self.lengths[0]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.latent + self.k_rope)

    def update(self, layer: int, c: Tensor, kr: Tensor, pos: int) -> tuple[Tensor, Tensor]:
        """c: (B, T, r), kr: (B, T, d_r) at pos..pos+T-1 -> all latents (B, pos+T, r), rope keys."""
        T = c.size(1)
        if pos + T > self.max_len:
            raise ValueError(f"latent cache full: position {pos} + {T} new > max_len {self.max_len}")
        B = c.size(0)
        self.latent[layer][:B, pos:pos + T] = c
        self.k_rope[layer][:B, pos:pos + T] = kr
        self.lengths[layer] = pos + T
        return self.latent[layer][:B, :pos + T], self.k_rope[layer][:B, :pos + T]


def deinterleave(x: Tensor) -> Tensor:
    """(x0, x1, x2, x3, ...) -> (x0, x2, ..., x1, x3, ...): DeepSeek's interleaved rope pairs in
    rotate-half layout, so nn.positions' rotary applies (HF's apply_rotary_pos_emb_interleave)."""
    return torch.cat((x[..., 0::2], x[..., 1::2]), dim=-1)


class MultiHeadLatentAttention(nn.Module):
    """x (B, T, d) -> (B, T, d); `absorbed` picks the latent-space form (equal outputs)."""

    def __init__(self, d_model: int, n_head: int, kv_lora_rank: int, q_lora_rank: int | None,
                 qk_nope_dim: int, qk_rope_dim: int, v_dim: int, rope_theta: float = 10000.0,
                 rope_interleave: bool = True, eps: float = 1e-6, max_len: int = 4096):
        super().__init__()
        self.n_head, self.r = n_head, kv_lora_rank
        self.dn, self.dr, self.dv = qk_nope_dim, qk_rope_dim, v_dim
        self.rope_interleave = rope_interleave
        self.scale = (qk_nope_dim + qk_rope_dim) ** -0.5
        qk = n_head * (qk_nope_dim + qk_rope_dim)
        if q_lora_rank is None:
            self.q_proj = nn.Linear(d_model, qk, bias=False)
        else:   # W^DQ, RMSNorm, W^UQ (with W^QR stacked in)
            self.q_a_proj = nn.Linear(d_model, q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(q_lora_rank, eps=eps)
            self.q_b_proj = nn.Linear(q_lora_rank, qk, bias=False)
        self.q_lora_rank = q_lora_rank
        # [W^DKV ; W^KR]: the latent and the shared rope key in one matmul
        self.kv_a_proj_with_mqa = nn.Linear(d_model, kv_lora_rank + qk_rope_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(kv_lora_rank, eps=eps)
        # [W^UK_i ; W^UV_i] for every head: (H·(d_n + d_v), r)
        self.kv_b_proj = nn.Linear(kv_lora_rank, n_head * (qk_nope_dim + v_dim), bias=False)
        self.o_proj = nn.Linear(n_head * v_dim, d_model, bias=False)
        self.rope = RotaryEmbedding(qk_rope_dim, max_len=max_len, theta=rope_theta)

    def _queries(self, x: Tensor) -> tuple[Tensor, Tensor]:
        B, T, _ = x.shape
        q = self.q_proj(x) if self.q_lora_rank is None else self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q = q.view(B, T, self.n_head, self.dn + self.dr).transpose(1, 2)     # (B, H, T, dn+dr)
        return q[..., :self.dn], q[..., self.dn:]

    def _rotate(self, q_rope: Tensor, k_rope: Tensor, pos: int) -> tuple[Tensor, Tensor]:
        if self.rope_interleave:
            q_rope, k_rope = deinterleave(q_rope), deinterleave(k_rope)
        return self.rope(q_rope, k_rope, offset=pos)

    def forward(self, x: Tensor, *, cache: LatentCache | None = None, layer: int = 0, pos: int = 0,
                absorbed: bool = False, mask: Tensor | None = None) -> Tensor:
        B, T, _ = x.shape
        q_nope, q_rope = self._queries(x)                                    # (B, H, T, dn), (B, H, T, dr)
        ckv, k_rope = self.kv_a_proj_with_mqa(x).split([self.r, self.dr], dim=-1)
        ckv = self.kv_a_layernorm(ckv)                                       # c^KV (B, T, r)
        q_rope, k_rope = self._rotate(q_rope, k_rope[:, None], pos)          # k^R (B, 1, T, dr)
        k_rope = k_rope[:, 0]                                                # (B, T, dr)
        if cache is not None:
            ckv, k_rope = cache.update(layer, ckv, k_rope, pos)              # (B, S, r), (B, S, dr)
        S = ckv.size(1)
        causal = mask is None and T > 1
        if mask is None and T > 1 and S > T:                                 # new queries after a cache
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
            causal = False
        w = self.kv_b_proj.weight.view(self.n_head, self.dn + self.dv, self.r)
        w_uk, w_uv = w[:, :self.dn], w[:, self.dn:]                          # (H, dn, r), (H, dv, r)
        if absorbed:
            y = self._absorbed(q_nope, q_rope, ckv, k_rope, w_uk, w_uv, mask, causal)
        else:
            # k^C_i = W^UK_i c, v^C_i = W^UV_i c                             (B, H, S, dn), (B, H, S, dv)
            k_nope = torch.einsum("hdr,bsr->bhsd", w_uk, ckv)
            v = torch.einsum("hdr,bsr->bhsd", w_uv, ckv)
            k = torch.cat([k_nope, k_rope[:, None].expand(B, self.n_head, S, self.dr)], dim=-1)
            q = torch.cat([q_nope, q_rope], dim=-1)                          # (B, H, T, dn+dr)
            y = scaled_dot_product(q, k, v, mask=mask, causal=causal, scale=self.scale)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.dv))

    def _absorbed(self, q_nope: Tensor, q_rope: Tensor, ckv: Tensor, k_rope: Tensor, w_uk: Tensor,
                  w_uv: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        T, S = q_nope.size(2), ckv.size(1)
        # q^C·(W^UK c) = (W^UKᵀ q^C)·c: queries moved into the latent space   (B, H, T, r)
        q_latent = torch.einsum("bhtd,hdr->bhtr", q_nope, w_uk)
        scores = (q_latent @ ckv[:, None].transpose(-2, -1)
                  + q_rope @ k_rope[:, None].transpose(-2, -1)) * self.scale  # (B, H, T, S)
        if causal:
            mask = torch.ones(T, S, dtype=torch.bool, device=ckv.device).tril(S - T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        # o_i = W^UV_i Σ_s p_s c_s                                            (B, H, T, dv)
        o_latent = scores.softmax(dim=-1) @ ckv[:, None]                      # (B, H, T, r)
        return torch.einsum("bhtr,hdr->bhtd", o_latent, w_uv)


# ---- KV-cache bytes per token ---------------------------------------------------------------
# Per token and layer: MHA keeps H keys + H values, GQA n_kv of each, MQA one of each
# (Shazeer 2019), MLA one latent of r numbers plus the d_r-dim rope key (DeepSeek-V2 Table 1).
ATTENTION_KINDS = ("MHA", "GQA", "MQA", "MLA")

# Published shapes: Llama-2-70B (Touvron et al. 2023, Table 1 + HF config), Mistral-7B (Jiang
# et al. 2023, Table 1), DeepSeek-V3 (its HF config: 128 heads, q/k 128+64, v 128, r = 512).
PUBLISHED_SHAPES: dict[str, dict] = {
    "Llama-2-70B": dict(kind="GQA", n_layer=80, n_head=64, n_kv_head=8, k_dim=128, v_dim=128),
    "Mistral-7B": dict(kind="GQA", n_layer=32, n_head=32, n_kv_head=8, k_dim=128, v_dim=128),
    "DeepSeek-V3": dict(kind="MLA", n_layer=61, n_head=128, k_dim=192, v_dim=128,
                        kv_lora_rank=512, rope_dim=64),
}


def kv_cache_bytes_per_token(kind: str, n_layer: int, n_head: int, k_dim: int, v_dim: int,
                             n_kv_head: int | None = None, kv_lora_rank: int = 0, rope_dim: int = 0,
                             bytes_per_value: int = 2) -> int:
    """Bytes of cache one token adds, over all layers (bytes_per_value 2 = bf16/fp16)."""
    if kind == "MHA":
        per_layer = n_head * (k_dim + v_dim)
    elif kind == "GQA":
        if not n_kv_head or n_head % n_kv_head:
            raise ValueError(f"GQA needs n_kv_head dividing n_head {n_head}, got {n_kv_head}")
        per_layer = n_kv_head * (k_dim + v_dim)
    elif kind == "MQA":
        per_layer = k_dim + v_dim
    elif kind == "MLA":
        if kv_lora_rank < 1:
            raise ValueError(f"MLA needs kv_lora_rank ≥ 1, got {kv_lora_rank}")
        per_layer = kv_lora_rank + rope_dim
    else:
        raise ValueError(f"unknown attention kind {kind!r}; valid: {', '.join(ATTENTION_KINDS)}")
    return n_layer * per_layer * bytes_per_value


def kv_cache_table(bytes_per_value: int = 2) -> list[dict]:
    """Each published model's cache per token as built, and what MHA and MQA of its shape would keep."""
    rows = []
    for name, shape in PUBLISHED_SHAPES.items():
        dims = {k: v for k, v in shape.items() if k != "kind"}
        row = {"model": name, "kind": shape["kind"],
               "bytes_per_token": kv_cache_bytes_per_token(shape["kind"], bytes_per_value=bytes_per_value, **dims)}
        for alt in ("MHA", "MQA"):
            row[f"{alt}_bytes_per_token"] = kv_cache_bytes_per_token(
                alt, shape["n_layer"], shape["n_head"], shape["k_dim"], shape["v_dim"],
                bytes_per_value=bytes_per_value)
        rows.append(row)
    return rows
