"""Causal linear attention in its three equal forms: quadratic, recurrent, chunked ("lightning").

Katharopoulos et al. 2020 ("Transformers are RNNs"), eq. (6)-(9): replace exp(q·k) by the
kernel φ(q)·φ(k), φ(x) = elu(x) + 1 > 0, so that

    o_t = φ(q_t)ᵀ S_t / (φ(q_t)ᵀ z_t),   S_t = Σ_{s≤t} λ^{t−s} φ(k_s) v_sᵀ  (d×d),
                                          z_t = Σ_{s≤t} λ^{t−s} φ(k_s)

with an optional decay λ ∈ (0, 1] (λ = 1: Katharopoulos; λ < 1: RetNet / TransNormerLLM's
decay). Three ways to compute the same o:
    quadratic  O = (M ∘ φ(Q) φ(K)ᵀ) V,  M_ts = λ^{t−s} [s ≤ t]            O(T² d)
    recurrent  S_t = λ S_{t−1} + φ(k_t) v_tᵀ, one step per token         O(T d²), O(d²) state
    chunked    (lightning attention, Qin et al. 2024, Alg. 1; MiniMax-01) per chunk of C tokens:
               intra-chunk part quadratic, inter-chunk part through the carried state,
               O_c = [(M ∘ Q_c K_cᵀ) V_c] + Λ Q_c S_{c−1},  S_c = λ^C S_{c−1} + (λ^{C−j} K_c)ᵀ V_c
normalize=False drops the denominator (lightning attention normalises the output instead).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

FORMS = ("quadratic", "recurrent", "chunked")


def feature_map(x: Tensor) -> Tensor:
    """φ(x) = elu(x) + 1 (Katharopoulos et al. 2020 eq. 7): positive, so the denominator is > 0."""
    return F.elu(x) + 1.0


def _decay_matrix(T: int, decay: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """M_ts = λ^{t−s} for s ≤ t, 0 above the diagonal                             (T, T)."""
    t = torch.arange(T, device=device, dtype=dtype)
    gap = t[:, None] - t[None, :]
    return torch.where(gap >= 0, decay ** gap.clamp_min(0), torch.zeros((), device=device, dtype=dtype))


def _finish(num: Tensor, den: Tensor | None, eps: float) -> Tensor:
    return num if den is None else num / (den + eps)


def linear_attention(q: Tensor, k: Tensor, v: Tensor, form: str = "chunked", decay: float = 1.0,
                     normalize: bool = True, chunk: int = 64, eps: float = 1e-6) -> Tensor:
    """q, k: (B, H, T, d), v: (B, H, T, dv) -> (B, H, T, dv), causal; φ applied here."""
    if form not in FORMS:
        raise ValueError(f"form={form!r}; valid: {', '.join(FORMS)}")
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay λ must be in (0, 1], got {decay}")
    if chunk < 1:
        raise ValueError(f"chunk must be ≥ 1, got {chunk}")
    fq, fk = feature_map(q), feature_map(k)                                     # (B, H, T, d)
    if form == "quadratic":
        # (M ∘ φ(Q) φ(K)ᵀ)                                                       (B, H, T, T)
        a = (fq @ fk.transpose(-2, -1)) * _decay_matrix(q.size(-2), decay, q.device, q.dtype)
        return _finish(a @ v, a.sum(-1, keepdim=True) if normalize else None, eps)
    if form == "recurrent":
        return _recurrent(fq, fk, v, decay, normalize, eps)
    return _chunked(fq, fk, v, decay, normalize, chunk, eps)


def _recurrent(fq: Tensor, fk: Tensor, v: Tensor, decay: float, normalize: bool, eps: float) -> Tensor:
    B, H, T, d = fq.shape
    state = fq.new_zeros(B, H, d, v.size(-1))                                   # S_t (d, dv)
    z = fq.new_zeros(B, H, d)                                                   # z_t
    out = []
    for t in range(T):
        # S_t = λ S_{t−1} + φ(k_t) v_tᵀ ;  z_t = λ z_{t−1} + φ(k_t)
        state = decay * state + fk[:, :, t, :, None] * v[:, :, t, None, :]
        z = decay * z + fk[:, :, t]
        num = (fq[:, :, t, None, :] @ state).squeeze(-2)                        # φ(q_t)ᵀ S_t
        den = (fq[:, :, t] * z).sum(-1, keepdim=True) if normalize else None
        out.append(_finish(num, den, eps))
    return torch.stack(out, dim=2)


def _chunked(fq: Tensor, fk: Tensor, v: Tensor, decay: float, normalize: bool, chunk: int,
             eps: float) -> Tensor:
    B, H, T, d = fq.shape
    state = fq.new_zeros(B, H, d, v.size(-1))                                   # S carried over chunks
    z = fq.new_zeros(B, H, d, 1)
    out = []
    for c0 in range(0, T, chunk):
        qc, kc, vc = fq[:, :, c0:c0 + chunk], fk[:, :, c0:c0 + chunk], v[:, :, c0:c0 + chunk]
        C = qc.size(-2)
        j = torch.arange(C, device=fq.device, dtype=fq.dtype)
        # intra: (M ∘ Q_c K_cᵀ) V_c                                              (B, H, C, dv)
        a = (qc @ kc.transpose(-2, -1)) * _decay_matrix(C, decay, fq.device, fq.dtype)
        # inter: Λ Q_c S_{c−1},  Λ = diag(λ^{j+1}) — the state is λ^{j+1} old at row j
        into = (decay ** (j + 1))[:, None]                                      # (C, 1)
        num = a @ vc + into * (qc @ state)
        den = (a.sum(-1, keepdim=True) + into * (qc @ z)) if normalize else None
        out.append(_finish(num, den, eps))
        # S_c = λ^C S_{c−1} + (λ^{C−1−j} K_c)ᵀ V_c
        age = (decay ** (C - 1 - j))[:, None]                                   # (C, 1)
        state = decay ** C * state + (age * kc).transpose(-2, -1) @ vc
        z = decay ** C * z + (age * kc).sum(dim=-2)[..., None]
    return torch.cat(out, dim=2)
