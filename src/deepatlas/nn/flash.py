"""The FlashAttention algorithm in PyTorch: tiled attention that never holds the T×S score matrix.

Online softmax (Milakov & Gimelshein 2018): softmax over keys can be computed one tile of keys
at a time, keeping per query row a running max m and normaliser ℓ, and rescaling what was
accumulated so far whenever the max grows. FlashAttention-2 (Dao 2023, Algorithm 1), per query
tile Q_i and key tile K_j:

    S_ij   = Q_i K_jᵀ · scale
    m_new  = max(m, rowmax(S_ij))
    P_ij   = exp(S_ij − m_new)
    ℓ      = e^{m − m_new} ℓ + rowsum(P_ij)
    O_i    = e^{m − m_new} O_i + P_ij V_j
    finally O_i ← O_i / ℓ  and  L_i = m + log ℓ   (the row's logsumexp, kept for the backward)

Backward (Dao 2023, Algorithm 2) recomputes P_ij = exp(S_ij − L_i) tile by tile instead of
storing it, with D_i = rowsum(dO_i ∘ O_i):

    dV_j += P_ijᵀ dO_i          dP_ij = dO_i V_jᵀ          dS_ij = P_ij ∘ (dP_ij − D_i)
    dQ_i += dS_ij K_j · scale   dK_j += dS_ijᵀ Q_i · scale

So memory is O(T·d) (inputs, output, L) plus one tile, against O(T·S) for the plain path.
This is the algorithm, written with torch ops for reading — the speed of FlashAttention comes
from doing it in on-chip SRAM inside one kernel, which Python loops cannot give.
`PeakMemory` measures the bytes held by tensors that torch ops create, so the two paths'
memory can be compared by measurement rather than by formula.
"""
from __future__ import annotations

import math
import weakref

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from deepatlas.nn.attention import repeat_kv


def _tile_keep(i0: int, i1: int, j0: int, j1: int, offset: int, causal: bool,
               keep_keys: Tensor | None, device: torch.device) -> Tensor | None:
    """Bool (B or 1, 1, i1-i0, j1-j0) mask of the tile, True = may attend; None = all kept."""
    keep = None
    if causal:  # query i (absolute position offset + i) sees key j iff j ≤ offset + i
        rows = torch.arange(i0, i1, device=device)[:, None] + offset
        keep = (torch.arange(j0, j1, device=device)[None, :] <= rows)[None, None]
    if keep_keys is not None:
        pad = keep_keys[:, None, None, j0:j1]                                  # (B, 1, 1, bk)
        keep = pad if keep is None else keep & pad
    return keep


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    """Running sums in fp32 (fp64 inputs keep fp64), as the kernel accumulates in fp32 registers."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _causal_skip(i1: int, j0: int, offset: int, causal: bool) -> bool:
    """True when the whole key tile lies after every query of the tile (above the diagonal)."""
    return causal and j0 > offset + i1 - 1


class FlashAttentionFunction(torch.autograd.Function):
    """q, k, v: (B, H, T, d), (B, H, S, d), (B, H, S, d) -> (B, H, T, d); saves only q, k, v, O, L."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, causal: bool, keep_keys: Tensor | None,
                scale: float, block_q: int, block_k: int) -> Tensor:
        B, H, T, d = q.shape
        S = k.size(-2)
        offset = S - T                     # with a cache the T queries are the last T positions
        acc_dtype = _accumulator(q.dtype)
        out = torch.empty_like(q)                                               # (B, H, T, d)
        lse = torch.empty(B, H, T, dtype=acc_dtype, device=q.device)        # L = logsumexp
        for i0 in range(0, T, block_q):
            i1 = min(i0 + block_q, T)
            qi = q[:, :, i0:i1]                                                 # (B, H, bq, d)
            m = torch.full((B, H, i1 - i0, 1), -math.inf, dtype=acc_dtype, device=q.device)
            ell = torch.zeros_like(m)
            acc = torch.zeros(B, H, i1 - i0, d, dtype=acc_dtype, device=q.device)
            for j0 in range(0, S, block_k):
                j1 = min(j0 + block_k, S)
                if _causal_skip(i1, j0, offset, causal):
                    break
                # S_ij = Q_i K_jᵀ · scale                                        (B, H, bq, bk)
                s = (qi @ k[:, :, j0:j1].transpose(-2, -1)).to(acc_dtype) * scale
                keep = _tile_keep(i0, i1, j0, j1, offset, causal, keep_keys, q.device)
                if keep is not None:
                    s = s.masked_fill(~keep, -math.inf)
                # m_new = max(m, rowmax S_ij); a row with no key yet keeps m = −inf
                m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
                m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
                # P_ij = exp(S_ij − m_new); rescale factor e^{m − m_new} for the old sums
                p = torch.exp(s - m_safe)
                alpha = torch.exp(m - m_safe)
                ell = alpha * ell + p.sum(dim=-1, keepdim=True)
                acc = alpha * acc + p @ v[:, :, j0:j1].to(acc_dtype)
                m = m_new
            # O_i = acc / ℓ (a row that saw no key gets 0); L_i = m + log ℓ
            out[:, :, i0:i1] = (acc / ell.clamp_min(1e-30)).to(q.dtype)
            lse[:, :, i0:i1] = (m + torch.log(ell)).squeeze(-1)
        ctx.save_for_backward(q, k, v, out, lse, keep_keys)
        ctx.causal, ctx.scale, ctx.block_q, ctx.block_k = causal, scale, block_q, block_k
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, out, lse, keep_keys = ctx.saved_tensors
        causal, scale, block_q, block_k = ctx.causal, ctx.scale, ctx.block_q, ctx.block_k
        T, S = q.size(-2), k.size(-2)
        offset = S - T
        acc_dtype = _accumulator(q.dtype)
        dq = torch.zeros_like(q, dtype=acc_dtype)
        dk = torch.zeros_like(k, dtype=acc_dtype)
        dv = torch.zeros_like(v, dtype=acc_dtype)
        # D_i = rowsum(dO_i ∘ O_i)                                              (B, H, T, 1)
        delta = (grad_out.to(acc_dtype) * out.to(acc_dtype)).sum(dim=-1, keepdim=True)
        for j0 in range(0, S, block_k):
            j1 = min(j0 + block_k, S)
            kj, vj = k[:, :, j0:j1].to(acc_dtype), v[:, :, j0:j1].to(acc_dtype)             # (B, H, bk, d)
            for i0 in range(0, T, block_q):
                i1 = min(i0 + block_q, T)
                if _causal_skip(i1, j0, offset, causal):
                    continue
                qi, doi = q[:, :, i0:i1].to(acc_dtype), grad_out[:, :, i0:i1].to(acc_dtype)
                # recompute P_ij = exp(S_ij − L_i) instead of having stored it
                s = (qi @ kj.transpose(-2, -1)) * scale                         # (B, H, bq, bk)
                keep = _tile_keep(i0, i1, j0, j1, offset, causal, keep_keys, q.device)
                if keep is not None:
                    s = s.masked_fill(~keep, -math.inf)
                li = lse[:, :, i0:i1, None]
                p = torch.exp(s - torch.where(torch.isinf(li), torch.zeros_like(li), li))
                # dV_j += P_ijᵀ dO_i
                dv[:, :, j0:j1] += p.transpose(-2, -1) @ doi
                # dP_ij = dO_i V_jᵀ;  dS_ij = P_ij ∘ (dP_ij − D_i)
                ds = p * (doi @ vj.transpose(-2, -1) - delta[:, :, i0:i1])
                # dQ_i += dS_ij K_j · scale;  dK_j += dS_ijᵀ Q_i · scale
                dq[:, :, i0:i1] += (ds @ kj) * scale
                dk[:, :, j0:j1] += (ds.transpose(-2, -1) @ qi) * scale
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, None


def flash_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False,
                    key_padding_mask: Tensor | None = None, scale: float | None = None,
                    block_q: int = 128, block_k: int = 128) -> Tensor:
    """q: (B, H, T, d), k and v: (B, H_kv, S, d) -> (B, H, T, d), equal to SDPA.

    causal: the T queries are the last T of the S positions (as deepatlas.nn.attention).
    key_padding_mask: (B, S) bool, True = padding (ignored key). A query that sees no key at all
    gets a zero output (SDPA's plain path would give NaN there)."""
    if q.dim() != 4 or k.dim() != 4 or v.shape != k.shape:
        raise ValueError(f"q, k, v must be (B, H, T, d) with k and v alike; got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if block_q < 1 or block_k < 1:
        raise ValueError(f"block sizes must be ≥ 1, got block_q={block_q}, block_k={block_k}")
    H, H_kv = q.size(1), k.size(1)
    if H % H_kv != 0:
        raise ValueError(f"query heads {H} must be a multiple of key/value heads {H_kv}")
    k, v = repeat_kv(k, H // H_kv), repeat_kv(v, H // H_kv)
    keep_keys = None
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool or key_padding_mask.shape != (q.size(0), k.size(2)):
            raise ValueError(f"key_padding_mask must be bool (B, S) = {(q.size(0), k.size(2))}, got "
                             f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")
        keep_keys = ~key_padding_mask
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    return FlashAttentionFunction.apply(q, k, v, causal, keep_keys, scale, block_q, block_k)


class PeakMemory(TorchDispatchMode):
    """with PeakMemory() as pm: ...  -> pm.peak_bytes, the most bytes held at once by tensors that
    torch ops created inside the block (autograd's saved tensors included; scratch memory inside
    a fused kernel, which never becomes a tensor, is not seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}      # storage pointer -> [bytes, tensors using it]
        self.current = 0
        self.peak_bytes = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor) and t.untyped_storage().nbytes() > 0:
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key not in self.live:
                    self.live[key] = [storage.nbytes(), 0]
                    self.current += storage.nbytes()
                    self.peak_bytes = max(self.peak_bytes, self.current)
                self.live[key][1] += 1
                weakref.finalize(t, self._release, key)
        return out
