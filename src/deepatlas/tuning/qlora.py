"""QLoRA (Dettmers et al. 2023, §3): LoRA adapters on a frozen base whose weights are NF4.

    Y = X · dequant(c₁, c₂, W^NF4) + (α / r) · X A B       (eq. 5; their A, B are our Aᵀ, Bᵀ)

The base stays 4-bit in memory (quant.nf4.NF4Linear) and is dequantised to the compute dtype
(bf16 or fp32) at each call; gradients flow through it to the adapters only. This module also
has the language-model pieces T2 measures with: windows of held-out text and perplexity.

    model = qlora(from_gguf(path), r=8, alpha=16)         # NF4 linears (head kept), LoRA on q, v
    perplexity(model, windows)                            # exp(mean next-token NLL)
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.quant.qmodel import quantize_linears
from deepatlas.tuning.lora import apply_lora

QLORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def qlora(model: nn.Module, r: int = 8, alpha: float = 16.0, targets: Sequence[str] = QLORA_TARGETS,
          dropout: float = 0.0, skip: Sequence[str] = ("lm_head",)) -> nn.Module:
    """In place: every linear except `skip` to NF4, then LoRA on `targets` (all else frozen)."""
    quantize_linears(model, "nf4", skip=skip)
    apply_lora(model, r=r, alpha=alpha, targets=targets, dropout=dropout)
    return model


def lm_loss(model: nn.Module, ids: Tensor) -> Tensor:
    """Mean next-token cross-entropy of ids (B, T): predict ids[:, 1:] from ids[:, :-1]."""
    logits = model(ids[:, :-1])                                                 # (B, T-1, V)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), ids[:, 1:].reshape(-1))


@torch.no_grad()
def perplexity(model: nn.Module, windows: Tensor, batch: int = 8) -> float:
    """exp of the mean next-token NLL over all windows (N, T) (every window scored on its own)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = windows[i:i + batch]
        total += float(lm_loss(model, w)) * w[:, 1:].numel()
        count += w[:, 1:].numel()
    return math.exp(total / count)


def text_windows(token_ids: Sequence[int], n: int, length: int, seed: int | None = None) -> Tensor:
    """n windows of `length` tokens: consecutive (seed None) or at random starts (seed given)."""
    ids = torch.tensor(list(token_ids), dtype=torch.long)
    if len(ids) < length + 1:
        raise ValueError(f"{len(ids)} tokens cannot fill a window of {length}")
    if seed is None:
        if n * length > len(ids):
            raise ValueError(f"{len(ids)} tokens cannot fill {n} consecutive windows of {length}")
        return ids[: n * length].view(n, length)
    starts = torch.randint(0, len(ids) - length, (n,), generator=torch.Generator().manual_seed(seed))
    return torch.stack([ids[s:s + length] for s in starts.tolist()])


class SavedBytes:
    """Bytes autograd keeps for the backward pass (saved_tensors_hooks), each storage once and
    not counting the storages in `exclude` (the weights, counted separately)."""

    def __init__(self, exclude: set[int]):
        self.exclude, self.seen, self.total = exclude, set(), 0

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in self.exclude and ptr not in self.seen:
            self.seen.add(ptr)
            self.total += t.untyped_storage().nbytes()
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)


def training_bytes(model: nn.Module, ids: Tensor) -> dict[str, int]:
    """Memory one training step of lm_loss on ids needs, from the tensors themselves: the weights
    (parameters + buffers), 12 bytes per trainable parameter besides it (gradient, Adam's m and v)
    and the bytes autograd saves for backward. -> {weights, optimizer, saved, total}."""
    from deepatlas.quant.qmodel import weight_bytes

    params = list(model.parameters()) + list(model.buffers())
    saved = SavedBytes({t.untyped_storage().data_ptr() for t in params})
    with saved.hooks():
        loss = lm_loss(model, ids)
    loss.backward()
    model.zero_grad(set_to_none=True)
    out = {"weights": weight_bytes(model), "optimizer": 12 * sum(p.numel() for p in model.parameters() if p.requires_grad),
           "saved": saved.total}
    out["total"] = sum(out.values())
    return out
