"""Sparse and structured attention: sliding window, local/global hybrid, MoBA, NSA, talking heads.

All take q, k, v: (B, H, T, d) of one causal self-attention (T queries = T keys) and return
(B, H, T, d). Each sparse pattern is written as the keep-mask it applies to the full score
matrix (the plain path): the pattern, not a kernel. `attended_fraction` counts the (query, key)
pairs a mask keeps against full causal attention — the FLOPs a block-sparse kernel would spend.

Sliding window (Beltagy et al. 2020; Mistral): query t sees keys t−w < s ≤ t.
Local/global hybrid (Gemma Team 2025, Gemma 3: five sliding-window layers per global layer):
    layer l is global iff (l + 1) % every == 0, else sliding window.
MoBA (Lu et al. 2025, "Mixture of Block Attention"): keys in blocks of size b; query t scores
    block i by the gate s_i = q_t · mean(K_i) and attends to its own block (causally) plus the
    top-(k−1) earlier blocks by s_i; the gate selects, it does not weight.
NSA (Yuan et al. 2025, "Native Sparse Attention"), eq. (5):
    o_t = Σ_{c ∈ {cmp, slc, win}} g_t^c · Attn(q_t, K̃_t^c, Ṽ_t^c),  g_t^c = σ(MLP(x_t)) ∈ [0, 1]
    cmp: one key per block of l tokens, k̃_i = φ(k_{il:(i+1)l}) with φ a learned map (here a
         linear map of the flattened block, so intra-block position is kept);
    slc: the tokens of the top-n blocks ranked by the compressed attention p_t^cmp (eq. 8-10);
    win: a sliding window of w tokens.
Talking-heads attention (Shazeer et al. 2020): logits and weights mixed across heads,
    J = P_ℓ · (Q Kᵀ/√d) over the head axis,  W = P_w · softmax(J),  O = W V.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from deepatlas.nn.attention import scaled_dot_product
from deepatlas.nn.masks import causal_mask


def sliding_window_mask(T: int, window: int, device: str | torch.device = "cpu") -> Tensor:
    """(T, T) bool: query t may see key s iff t − window < s ≤ t."""
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    return causal_mask(T, T, device).triu(-(window - 1))


def attended_fraction(keep: Tensor) -> float:
    """Kept (query, key) pairs / pairs of full causal attention (keep broadcast to (..., T, T))."""
    T = keep.size(-1)
    full = T * (T + 1) / 2
    return float(keep.float().sum(dim=(-2, -1)).mean()) / full


def masked_attention(q: Tensor, k: Tensor, v: Tensor, keep: Tensor) -> Tensor:
    """softmax(QKᵀ/√d) V over the kept keys; a query that keeps no key gets 0 (not NaN)."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))                  # (B, H, T, S)
    scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.nan_to_num(scores.softmax(dim=-1), nan=0.0)                 # dead rows -> 0
    return weights @ v


def sliding_window_attention(q: Tensor, k: Tensor, v: Tensor, window: int) -> Tensor:
    """Causal attention restricted to the last `window` keys (the query's own included)."""
    return scaled_dot_product(q, k, v, mask=sliding_window_mask(q.size(-2), window, q.device))


def is_global_layer(layer: int, every: int) -> bool:
    """Gemma-3 hybrid: every `every`-th layer (1-based) attends globally, the rest locally."""
    if every < 1:
        raise ValueError(f"every must be ≥ 1, got {every}")
    return (layer + 1) % every == 0


def _block_means(k: Tensor, block: int) -> Tensor:
    """(B, H, T, d) -> (B, H, nb, d): the mean key of each block of `block` positions."""
    B, H, T, d = k.shape
    nb = math.ceil(T / block)
    padded = torch.zeros(B, H, nb * block, d, dtype=k.dtype, device=k.device)
    padded[:, :, :T] = k
    counts = torch.full((nb,), float(block), device=k.device)
    counts[-1] = T - (nb - 1) * block
    return padded.view(B, H, nb, block, d).sum(dim=3) / counts[:, None].to(k.dtype)


def _blocks_to_tokens(block_keep: Tensor, block: int, T: int) -> Tensor:
    """(..., T, nb) bool over blocks -> (..., T, T) bool over the blocks' tokens."""
    return block_keep.repeat_interleave(block, dim=-1)[..., :T]


def moba_mask(q: Tensor, k: Tensor, block: int, top_k: int) -> Tensor:
    """(B, H, T, T) bool: MoBA's selection — own block (causal) + top-(k−1) earlier blocks by q·mean(K_i)."""
    if block < 1 or top_k < 1:
        raise ValueError(f"MoBA needs block ≥ 1 and top_k ≥ 1, got block={block}, top_k={top_k}")
    T = q.size(-2)
    nb = math.ceil(T / block)
    # gate s_{t,i} = q_t · mean(K_i)                                           (B, H, T, nb)
    gate = q @ _block_means(k, block).transpose(-2, -1)
    own = torch.arange(T, device=q.device) // block                              # (T,)
    earlier = torch.arange(nb, device=q.device)[None, :] < own[:, None]          # (T, nb)
    gate = gate.masked_fill(~earlier, float("-inf"))
    n_pick = min(top_k - 1, nb)
    block_keep = torch.zeros(gate.shape, dtype=torch.bool, device=q.device)
    if n_pick > 0:
        picked = gate.topk(n_pick, dim=-1).indices                               # (B, H, T, k-1)
        block_keep.scatter_(-1, picked, True)
        block_keep &= earlier                                                    # -inf picks dropped
    block_keep |= torch.arange(nb, device=q.device)[None, :] == own[:, None]     # own block
    return _blocks_to_tokens(block_keep, block, T) & causal_mask(T, T, q.device)


def moba_attention(q: Tensor, k: Tensor, v: Tensor, block: int, top_k: int) -> Tensor:
    """Causal attention over MoBA's selected blocks (the gate picks blocks; softmax over their keys)."""
    return scaled_dot_product(q, k, v, mask=moba_mask(q, k, block, top_k))


class NSAttention(nn.Module):
    """NSA's three branches (compressed, selected, sliding) combined by per-head sigmoid gates.

    forward(q, k, v): (B, H, T, d) each -> (B, H, T, d). The gate reads the query (NSA reads the
    token's hidden state x_t; the query is a linear map of it)."""

    def __init__(self, head_dim: int, block: int = 16, top_n: int = 2, window: int = 32):
        super().__init__()
        if block < 1 or top_n < 1 or window < 1:
            raise ValueError(f"NSA needs block, top_n, window ≥ 1; got {block}, {top_n}, {window}")
        self.block, self.top_n, self.window = block, top_n, window
        self.compress_k = nn.Linear(block * head_dim, head_dim)     # φ: one key per block
        self.compress_v = nn.Linear(block * head_dim, head_dim)
        self.gate = nn.Linear(head_dim, 3)                          # g^cmp, g^slc, g^win

    def _compress(self, x: Tensor, proj: nn.Linear) -> Tensor:
        """(B, H, T, d) -> (B, H, T // block, d): φ of each complete block."""
        B, H, T, d = x.shape
        nb = T // self.block
        return proj(x[:, :, :nb * self.block].reshape(B, H, nb, self.block * d))

    def branch_masks(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """-> compressed keys/values, their keep mask (T, nb), the selected-token mask and the window mask."""
        T, l = q.size(-2), self.block
        k_cmp = self._compress(k, self.compress_k)                                # (B, H, nb, d)
        nb = k_cmp.size(-2)
        # block i is complete (usable) for query t once its last token (i+1)l − 1 ≤ t
        cmp_keep = (torch.arange(nb, device=q.device)[None, :] + 1) * l - 1 <= torch.arange(
            T, device=q.device)[:, None]                                          # (T, nb)
        # p_t^cmp = softmax(q_t · k̃ᵀ/√d) ranks the blocks (eq. 8); pick the top-n complete ones
        scores = (q @ k_cmp.transpose(-2, -1)) / math.sqrt(q.size(-1))
        scores = scores.masked_fill(~cmp_keep, float("-inf"))
        n_blocks = math.ceil(T / l)
        block_keep = torch.zeros(*scores.shape[:-1], n_blocks, dtype=torch.bool, device=q.device)
        if nb > 0:
            picked = scores.topk(min(self.top_n, nb), dim=-1).indices
            chosen = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, picked, True) & cmp_keep
            block_keep[..., :nb] = chosen
        own = torch.arange(T, device=q.device) // l
        block_keep |= torch.arange(n_blocks, device=q.device)[None, :] == own[:, None]   # own block
        slc_keep = _blocks_to_tokens(block_keep, l, T) & causal_mask(T, T, q.device)
        return k_cmp, cmp_keep, slc_keep, sliding_window_mask(T, self.window, q.device), scores

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        k_cmp, cmp_keep, slc_keep, win_keep, _ = self.branch_masks(q, k)
        v_cmp = self._compress(v, self.compress_v)                                # (B, H, nb, d)
        o_cmp = masked_attention(q, k_cmp, v_cmp, cmp_keep)                       # (B, H, T, d)
        o_slc = scaled_dot_product(q, k, v, mask=slc_keep)
        o_win = scaled_dot_product(q, k, v, mask=win_keep)
        # eq. (5): o_t = Σ_c g_t^c o_t^c,  g = σ(MLP(x_t))
        g = torch.sigmoid(self.gate(q))                                           # (B, H, T, 3)
        return g[..., 0:1] * o_cmp + g[..., 1:2] * o_slc + g[..., 2:3] * o_win


class TalkingHeadsAttention(nn.Module):
    """Causal attention with logits and weights mixed across the H heads (Shazeer et al. 2020).

    With P_ℓ = P_w = I it is ordinary multi-head attention (tests/nn/test_sparse_attention.py)."""

    def __init__(self, n_head: int):
        super().__init__()
        self.logit_mix = nn.Parameter(torch.eye(n_head))     # P_ℓ (H, H)
        self.weight_mix = nn.Parameter(torch.eye(n_head))    # P_w (H, H)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        T = q.size(-2)
        # logits per head, then J_h = Σ_h' P_ℓ[h, h'] L_h'                       (B, H, T, T)
        logits = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        logits = torch.einsum("gh,bhts->bgts", self.logit_mix, logits)
        logits = logits.masked_fill(~causal_mask(T, T, q.device), float("-inf"))
        # W_h = Σ_h' P_w[h, h'] softmax(J_h'), then O = W V                       (B, H, T, d)
        weights = torch.einsum("gh,bhts->bgts", self.weight_mix, logits.softmax(dim=-1))
        return weights @ v
