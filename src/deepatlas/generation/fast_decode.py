"""A fast decode path for our LLaMA (SmolLM2): fused projections, a slot KV cache, few ops a token.

The plain path (models/llama.py through generation/decode.py) is the readable one: each layer is a
TransformerBlock of separate nn.Linear / quant modules, a cache object that grows a view per call,
masks rebuilt per layer, RoPE tables gathered per call, dtype conversions around every fused
kernel. Decoding one token on a CPU is then ~1,700 small ops (../shared/MEASURED.md), so the time
goes to per-op overhead rather than to reading the weights. This path computes the same model with:

    fused projections   [q | k | v] = x [W_q | W_k | W_v]ᵀ  and  [g | u] = x [W_gate | W_up]ᵀ:
                        one kernel call instead of three and two (the concatenated int4 blocks or
                        fp32 rows; 4 matmuls a layer instead of 7);
    RoPE once           q and k rotated together, the tables sliced once a step:
                        R_θ x = x ⊙ cos θ + rotate_half(x) ⊙ sin θ   (Su et al. 2021 eq. 34);
    a slot KV cache     K, V (n_layer, n_slots, n_kv, max_len, hd), preallocated once; row r of a
                        batch is slot r, so the keys a step reads are a view, never a gather
                        (see SlotCache for why slots, not pages);
    one mask a step     keys j < length_r of each row, shared by every layer; none at batch 1;
    one dtype           activations in the kernels' dtype (bf16 for int8/int4, fp32 otherwise),
                        the residual stream h kept in fp32;
    last position only  a prompt's prefill computes the output head for its last token only.

Everything else is the model's own weights and equations (tests/generation/test_fast_decode.py:
fp32 logits equal the plain model's, greedy tokens equal decode.generate's).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.llama import Llama
from deepatlas.quant.linear import Int4Linear, Int8Linear

Linear = Callable[[Tensor], Tensor]
INT4_ROW_BLOCK = 64   # _convert_weight_to_int4pack_for_cpu lays out output rows in blocks of 64


def fuse_linears(layers: Sequence[nn.Module]) -> tuple[Linear, torch.dtype]:
    """One call computing [y_1 | y_2 | ...] = x [W_1 | W_2 | ...]ᵀ for layers of the same kind.

    -> (f, dtype): f takes 2-D input in `dtype` and returns (rows, Σ out) in that dtype."""
    kinds = {type(m) for m in layers}
    if kinds == {nn.Linear} and all(m.bias is None for m in layers):
        w = torch.cat([m.weight.detach() for m in layers]).contiguous()       # (Σ out, in)
        return (lambda x: F.linear(x, w)), w.dtype
    if kinds == {Int4Linear} and all(m.shape[0] % INT4_ROW_BLOCK == 0 for m in layers[:-1]):
        # the CPU int4 layout packs blocks of 64 output rows: whole blocks concatenate (tested)
        packed = torch.cat([m.packed for m in layers])                          # (Σ out, in / 2)
        sz = torch.cat([m.scales_and_zeros for m in layers], dim=1)             # (in / 32, Σ out, 2)
        group = layers[0].GROUP
        return (lambda x: torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group, sz)), torch.bfloat16
    if kinds == {Int8Linear}:
        q = torch.cat([m.q for m in layers])                                    # (Σ out, in) int8
        scale = torch.cat([m.scale for m in layers])                            # (Σ out,) bf16
        return (lambda x: torch.ops.aten._weight_int8pack_mm(x, q, scale)), torch.bfloat16
    # other forms (bf16 Linear, gguf blocks, mixed): each module as it is, outputs concatenated
    dtype = torch.float32   # the fused int kernels' modules take bf16 in and give it back
    for m in layers:
        if isinstance(m, nn.Linear):
            dtype = m.weight.dtype
        elif isinstance(m, (Int4Linear, Int8Linear)):
            dtype = torch.bfloat16
    return (lambda x: torch.cat([m(x) for m in layers], dim=-1)), dtype


class SlotCache:
    """Keys and values of n_slots sequences: K, V (n_layer, n_slots, n_kv, max_len, hd) each.

    Slots, not pages: a slot holds one sequence of up to max_len positions in one contiguous
    block, so a decode step reads every active row's keys as one view K[l, :B, :, :L]. vLLM's
    paged attention (Kwon et al. 2023) splits the cache into fixed pages mapped per sequence, so
    memory is allocated as sequences grow and fragmentation stays under a page — what matters on a
    GPU whose memory holds a few long sequences. Here (CPU, short chats, cache ≪ RAM) reserving
    max_len per slot costs memory we have, and keeps attention a dense kernel over a view instead
    of a gather over page tables. Rows are kept compact: when row r leaves, the last row moves into
    slot r (one copy of its keys), so the active rows are always slots 0..B-1.
    """

    def __init__(self, n_layer: int, n_slots: int, n_kv: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32):
        shape = (n_layer, n_slots, n_kv, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        self.lengths = [0] * n_slots
        self.n_slots, self.max_len = n_slots, max_len

    def move(self, src: int, dst: int) -> None:
        """Copy slot src's sequence into slot dst (compaction when dst's sequence left)."""
        if src != dst:
            n = self.lengths[src]
            self.k[:, dst, :, :n] = self.k[:, src, :, :n]
            self.v[:, dst, :, :n] = self.v[:, src, :, :n]
            self.lengths[dst] = n
        self.lengths[src] = 0 if src != dst else self.lengths[src]

    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()


class FastLlama:
    """Our Llama's weights rearranged for decoding (see the module docstring); `model` is kept.

    prefill(slot, ids) -> logits (V,) of the last prompt position, written into `slot`;
    step(tokens) -> logits (B, V): one new token for each of rows/slots 0..B-1."""

    def __init__(self, model: Llama, n_slots: int = 1, max_len: int = 2048):
        cfg = model.config
        if max_len > cfg.context_length:
            raise ValueError(f"max_len {max_len} exceeds the model's context length {cfg.context_length}")
        self.model, self.config = model, cfg
        self.nh, self.nkv, self.hd = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.eps = cfg.norm_eps
        self.layers = []
        for b in model.blocks:
            a, f = b.self_attn, b.ffn
            qkv, act = fuse_linears([a.q_proj, a.k_proj, a.v_proj])
            gate_up, _ = fuse_linears([f.gate_proj, f.up_proj])
            o, _ = fuse_linears([a.o_proj])
            down, _ = fuse_linears([f.down_proj])
            self.layers.append((b.norm1.weight.detach().float(), qkv, o,
                                b.norm2.weight.detach().float(), gate_up, down))
        self.act = act                                             # the kernels' activation dtype
        self.head, self.head_dtype = fuse_linears([model.lm_head])
        self.final_norm = model.norm.weight.detach().float()
        self.embed = model.embed.weight.detach()
        self.ffn_dim = cfg.ffn_dim
        # RoPE tables (max_len, hd) in the activations' dtype
        rope = model.rope
        rope.cos_sin(max_len, 0)                                   # grows the tables if needed
        self.cos, self.sin = rope.cos[:max_len].to(self.act), rope.sin[:max_len].to(self.act)
        self.cache = SlotCache(cfg.n_layer, n_slots, self.nkv, max_len, self.hd, dtype=self.act)
        self.vocab_size, self.context_length = cfg.vocab_size, max_len

    # ---- one forward over rows 0..B-1 --------------------------------------------------
    def _norm(self, x: Tensor, w: Tensor) -> Tensor:
        # RMSNorm (Zhang & Sennrich 2019 eq. 4): x / sqrt(mean(x²) + ε) · g, statistics in fp32
        return F.rms_norm(x, w.shape, w, self.eps).to(self.act)

    @torch.inference_mode()
    def _forward(self, x: Tensor, rows: int | None, start: Tensor, mask: Tensor | None,
                 causal: bool) -> Tensor:
        """x (B, T, d) fp32 embeddings at positions start_r..start_r+T-1 of each row's slot -> h_L.

        rows: a slot index (T positions of that one row: a prompt, or draft tokens to verify) or
              None (rows 0..B-1, one new token each); start (B,) long, each row's first position.
        mask: (B, 1, T, L) bool over the keys, or None with `causal` (T queries are the last T of
              L keys) or without (every query sees keys 0..L-1)."""
        B, T, d = x.shape
        nh, nkv, hd = self.nh, self.nkv, self.hd
        pos = start[:, None] + torch.arange(T)                     # (B, T)
        cos, sin = self.cos[pos][:, :, None], self.sin[pos][:, :, None]   # (B, T, 1, hd)
        L = int(start.max()) + T
        p0 = int(start[0])
        same = rows is not None or bool((start == p0).all())       # rows write at the same position
        ar, half = torch.arange(B), hd // 2
        for li, (n1, qkv_proj, o_proj, n2, gate_up, down) in enumerate(self.layers):
            h = self._norm(x, n1).view(B * T, d)
            qkv = qkv_proj(h).view(B, T, nh + 2 * nkv, hd)          # [q | k | v] heads
            qk = qkv[:, :, :nh + nkv]                              # (B, T, nh + nkv, hd)
            # R_θ x = x ⊙ cos θ + rotate_half(x) ⊙ sin θ, q and k in one go
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * sin
            q = qk[:, :, :nh].transpose(1, 2)                      # (B, nh, T, hd)
            k = qk[:, :, nh:].transpose(1, 2)                      # (B, nkv, T, hd)
            v = qkv[:, :, nh + nkv:].transpose(1, 2)               # (B, nkv, T, hd)
            K, V = self.cache.k[li], self.cache.v[li]              # (slots, nkv, max_len, hd)
            if rows is not None:                                   # one row, T positions
                K[rows, :, p0:p0 + T] = k[0]
                V[rows, :, p0:p0 + T] = v[0]
                keys, values = K[rows:rows + 1, :, :L], V[rows:rows + 1, :, :L]
            else:                                                  # B rows, one position each
                if same:
                    K[:B, :, p0] = k[:, :, 0]
                    V[:B, :, p0] = v[:, :, 0]
                else:
                    K[ar, :, start] = k[:, :, 0]                   # (B, nkv, hd) at (r, :, start_r)
                    V[ar, :, start] = v[:, :, 0]
                keys, values = K[:B, :, :L], V[:B, :, :L]          # (B, nkv, L, hd), a view
            # Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V over the row's keys    (B, nh, T, hd)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal,
                                               enable_gqa=nh != nkv)
            x = x + o_proj(y.transpose(1, 2).reshape(B * T, nh * hd)).view(B, T, d)  # a = h + Attn
            h = self._norm(x, n2).view(B * T, d)
            gu = gate_up(h)                                        # (B·T, 2 ffn)
            # SwiGLU (Shazeer 2020): (silu(x W_gate) ⊙ x W_up) W_down;  h' = a + FFN
            x = x + down(F.silu(gu[:, :self.ffn_dim]) * gu[:, self.ffn_dim:]).view(B, T, d)
        return x

    def _logits(self, h: Tensor) -> Tensor:
        """h (N, d) -> logits (N, V) fp32: RMSNorm(h_L) W_out."""
        return self.head(F.rms_norm(h, self.final_norm.shape, self.final_norm, self.eps)
                         .to(self.head_dtype)).float()

    def _check_room(self, slot: int, n: int) -> None:
        if not 0 <= slot < self.cache.n_slots:
            raise ValueError(f"slot {slot} out of range: this cache has slots 0..{self.cache.n_slots - 1}")
        if self.cache.lengths[slot] + n > self.cache.max_len:
            raise ValueError(f"slot {slot} holds {self.cache.lengths[slot]} positions; {n} more exceed "
                             f"max_len {self.cache.max_len}")

    @torch.inference_mode()
    def extend(self, slot: int, ids: Sequence[int]) -> Tensor:
        """Append `ids` to slot's sequence (a prompt, or draft tokens) -> logits (T, V) of each."""
        T = len(ids)
        if T == 0:
            raise ValueError("extend needs at least one token id")
        self._check_room(slot, T)
        p0 = self.cache.lengths[slot]
        x = self.embed[torch.tensor(list(ids))][None].float()      # (1, T, d)
        mask, causal = None, T > 1 and p0 == 0
        if T > 1 and p0 > 0:                                       # query i sees keys j ≤ p0 + i
            mask = torch.ones(T, p0 + T, dtype=torch.bool).tril(p0)[None, None]
        h = self._forward(x, slot, torch.tensor([p0]), mask, causal)
        self.cache.lengths[slot] = p0 + T
        return self._logits(h[0])

    def prefill(self, slot: int, ids: Sequence[int]) -> Tensor:
        """A new sequence in `slot` -> logits (V,) after its last token (only that position's head)."""
        T = len(ids)
        self._check_room(slot, 0)
        self.cache.lengths[slot] = 0
        self._check_room(slot, T)
        with torch.inference_mode():
            x = self.embed[torch.tensor(list(ids))][None].float()
            h = self._forward(x, slot, torch.tensor([0]), None, T > 1)
            self.cache.lengths[slot] = T
            return self._logits(h[0, -1:])[0]

    @torch.inference_mode()
    def step(self, tokens: Tensor | Sequence[int]) -> Tensor:
        """One new token for each of rows 0..B-1 (B = len(tokens)) -> logits (B, V)."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        B = tokens.numel()
        lengths = self.cache.lengths[:B]
        if B == 0 or B > self.cache.n_slots or min(lengths) == 0:
            raise ValueError(f"step needs 1..{self.cache.n_slots} rows, each prefilled first; got {B} "
                             f"with lengths {lengths}")
        if max(lengths) + 1 > self.cache.max_len:
            raise ValueError(f"a row holds {max(lengths)} positions; one more exceeds max_len {self.cache.max_len}")
        start = torch.tensor(lengths)                              # (B,) where each new token goes
        mask = None
        if min(lengths) != max(lengths):                           # row r sees keys j ≤ start_r
            mask = (torch.arange(max(lengths) + 1) <= start[:, None])[:, None, None]  # (B, 1, 1, L)
        h = self._forward(self.embed[tokens][:, None].float(), None, start, mask, False)
        for r in range(B):
            self.cache.lengths[r] += 1
        return self._logits(h[:, 0])

    def crop(self, slot: int, length: int) -> None:
        """Forget slot's positions ≥ length (rejected draft tokens)."""
        self.cache.lengths[slot] = min(self.cache.lengths[slot], length)


def greedy(fast: FastLlama, prompt: Sequence[int], max_new_tokens: int,
           stop_ids: Sequence[int] = ()) -> list[int]:
    """x_{t+1} = argmax_x P(x | x_≤t) on slot 0, one step per token -> the new tokens."""
    if max_new_tokens <= 0:
        return []
    out = [int(fast.prefill(0, prompt).argmax())]
    while len(out) < max_new_tokens and out[-1] not in stop_ids:
        out.append(int(fast.step([out[-1]])[0].argmax()))
    return out
