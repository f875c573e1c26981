"""Quantise a whole model's linear layers for quality and memory measurements (T2) and QLoRA.

    quantize_linears(model, "nf4")       every nn.Linear -> NF4Linear (and so on for the kinds below)
    weight_bytes(model)                  bytes of all parameters and buffers, each storage once

kinds (bytes per weight):
    int8      per-output-channel absmax int8, weight-only                        (1 + 4/in)
    llm.int8  int8 weights and activations with LLM.int8()'s outlier features     (1 + 4/in)
    nf4       NF4, blocks of 64, double-quantised scales (QLoRA's storage)        (≈ 0.516)
    q8_0, q4_0, q4_1   ggml blocks of 32 from our quantisers (quant/gguf_quant)  (1.0625, 0.5625, 0.625)
A tied output head (lm_head.weight is the embedding table) is quantised once: the head becomes
the quantised layer and the embedding looks its rows up in it (QuantTiedEmbedding).
All layers dequantise on the fly to the activations' dtype, so these measure the quantisers'
error and the memory they hold — not a fused low-bit kernel's speed (quant/linear.py has those).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.quant.dequant import TYPE_IDS
from deepatlas.quant.gguf_quant import quantize as gguf_quantize
from deepatlas.quant.int8 import Int8AbsmaxLinear, LLMInt8Linear
from deepatlas.quant.linear import BlockQuantLinear
from deepatlas.quant.nf4 import NF4Linear


class GGMLLinear(BlockQuantLinear):
    """BlockQuantLinear of blocks written by our quantiser, with nn.Linear's in/out attributes."""

    def __init__(self, linear: nn.Linear, kind: str):
        if linear.bias is not None:
            raise ValueError("ggml block layers here are bias-free")
        w = linear.weight.detach().float().cpu().numpy()
        super().__init__(gguf_quantize(w, kind), TYPE_IDS[kind], tuple(w.shape))
        self.out_features, self.in_features = w.shape
        self.d = self.d.half()                      # fp16 as in the file (BlockQuantLinear widens them)
        if hasattr(self, "m"):
            self.m = self.m.half()

    def weight(self) -> Tensor:
        d, m = self.d.float(), self.m.float() if self.kind == "Q4_1" else None
        if self.kind == "Q8_0":
            w = d * self.qs.float()                                             # (out, nb, 32)
        else:
            q = torch.cat([self.qs & 0x0F, self.qs >> 4], dim=-1).float()      # (out, nb, 32)
            w = d * (q - 8) if self.kind == "Q4_0" else d * q + m
        return w.reshape(self.shape)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return self.weight().to(dtype)


KINDS: dict[str, Callable[[nn.Linear], nn.Module]] = {
    "int8": Int8AbsmaxLinear,
    "llm.int8": LLMInt8Linear,
    "nf4": NF4Linear,
    "q8_0": lambda lin: GGMLLinear(lin, "Q8_0"),
    "q4_0": lambda lin: GGMLLinear(lin, "Q4_0"),
    "q4_1": lambda lin: GGMLLinear(lin, "Q4_1"),
}


class QuantTiedEmbedding(nn.Module):
    """An embedding whose table is a quantised output head's weight: rows dequantised on lookup."""

    def __init__(self, head: nn.Module, padding_idx: int | None = None):
        super().__init__()
        self.head = [head]                          # a list: not a submodule, so its bytes count once
        self.num_embeddings, self.embedding_dim = head.out_features, head.in_features

    def forward(self, idx: Tensor) -> Tensor:
        return F.embedding(idx, self.head[0].dequantize(torch.float32))


def quantize_linears(model: nn.Module, kind: str, skip: Sequence[str] = (), head: str | None = None) -> nn.Module:
    """Replace every nn.Linear (names ending in one of `skip` excepted) by its `kind` layer, in
    place; `lm_head` takes the kind `head` if given (llama.cpp keeps it at 8 bits: q8_0). A head
    tied to `model.embed` is quantised once, the embedding then reading its rows from it."""
    for k in (kind, head or kind):
        if k not in KINDS:
            raise ValueError(f"unknown quantisation {k!r}; valid: {', '.join(KINDS)}")
    embed = getattr(model, "embed", None)
    tied = isinstance(embed, nn.Embedding) and isinstance(getattr(model, "lm_head", None), nn.Linear) \
        and model.lm_head.weight is embed.weight
    targets = [(name, m) for name, m in model.named_modules()
               if type(m) is nn.Linear and not any(name == s or name.endswith("." + s) for s in skip)]
    for name, m in targets:
        parent, _, child = name.rpartition(".")
        q = KINDS[head if head and name == "lm_head" else kind](m)
        setattr(model.get_submodule(parent) if parent else model, child, q)
        if tied and name == "lm_head":
            model.embed = QuantTiedEmbedding(q)
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (a storage shared by two names counted once)."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total
