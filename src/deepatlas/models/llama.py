"""LLaMA: the modern decoder (map place L5), built from the shared blocks of deepatlas.nn.

Touvron et al. 2023 ("LLaMA: Open and Efficient Foundation Language Models", §2.2) change the
GPT-2 decoder in three places, and LLaMA 2 adds a fourth:
    pre-normalisation with RMSNorm    (Zhang & Sennrich 2019)   h = x + Attn(RMSNorm(x))
    SwiGLU feed-forward               (Shazeer 2020)             FFN(x) = (silu(x W_gate) ⊙ x W_up) W_down
    rotary position embeddings        (Su et al. 2021)           q, k rotated by pos·θ_i, no position table
    grouped-query attention           (Ainslie et al. 2023)      n_kv_head < n_head key/value heads

    h_0 = E[x];  a_l = h_{l-1} + Attn(RMSNorm(h_{l-1}));  h_l = a_l + FFN(RMSNorm(a_l))
    P(x_{t+1} | x_≤t) = softmax(RMSNorm(h_L) W_out),   W_out = Eᵀ when embeddings are tied

Each layer is a deepatlas.nn.blocks.TransformerBlock (pre-norm, rmsnorm, swiglu, no biases, GQA,
RoPE). Weights load from Hugging Face's LlamaForCausalLM state dict or from a GGUF file
(llama.cpp's layout, read by deepatlas.quant.gguf). The forward is deepatlas.generation's
decoding interface: model(idx, cache=..., pos=..., attention_mask=...) -> logits.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from deepatlas.nn.attention import KVCache
from deepatlas.nn.blocks import TransformerBlock
from deepatlas.nn.masks import causal_mask
from deepatlas.nn.norms import RMSNorm
from deepatlas.nn.positions import RotaryEmbedding
from deepatlas.quant.gguf import read_gguf


@dataclass
class LlamaConfig:
    vocab_size: int = 49152
    dim: int = 576                # d_model
    n_layer: int = 30
    n_head: int = 9
    n_kv_head: int = 3
    ffn_dim: int = 1536
    rope_theta: float = 100000.0
    norm_eps: float = 1e-5
    context_length: int = 8192
    tie_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @classmethod
    def from_gguf_metadata(cls, meta: dict[str, Any], has_output: bool = False) -> LlamaConfig:
        """Read the `llama.*` keys llama.cpp writes (the GGUF spec's LLM metadata)."""
        arch = meta.get("general.architecture")
        if arch != "llama":
            raise ValueError(f"GGUF architecture is {arch!r}; this model reads 'llama'")
        vocab = meta.get("llama.vocab_size") or len(meta["tokenizer.ggml.tokens"])
        return cls(vocab_size=vocab, dim=meta["llama.embedding_length"], n_layer=meta["llama.block_count"],
                   n_head=meta["llama.attention.head_count"],
                   n_kv_head=meta.get("llama.attention.head_count_kv", meta["llama.attention.head_count"]),
                   ffn_dim=meta["llama.feed_forward_length"],
                   rope_theta=float(meta.get("llama.rope.freq_base", 10000.0)),
                   norm_eps=float(meta["llama.attention.layer_norm_rms_epsilon"]),
                   context_length=meta.get("llama.context_length", 2048), tie_embeddings=not has_output)

    @classmethod
    def from_hf(cls, hf: Any) -> LlamaConfig:
        """From a transformers LlamaConfig."""
        return cls(vocab_size=hf.vocab_size, dim=hf.hidden_size, n_layer=hf.num_hidden_layers,
                   n_head=hf.num_attention_heads, n_kv_head=hf.num_key_value_heads,
                   ffn_dim=hf.intermediate_size, rope_theta=float(hf.rope_parameters["rope_theta"]),
                   norm_eps=hf.rms_norm_eps, context_length=hf.max_position_embeddings,
                   tie_embeddings=hf.tie_word_embeddings)


def config_to_hf(cfg: LlamaConfig) -> Any:
    """A transformers LlamaConfig with our numbers."""
    import transformers

    return transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head, intermediate_size=cfg.ffn_dim,
        rope_theta=cfg.rope_theta, rms_norm_eps=cfg.norm_eps, max_position_embeddings=cfg.context_length,
        tie_word_embeddings=cfg.tie_embeddings, bos_token_id=1, eos_token_id=2)


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)                     # E
        # one rotary table shared by every layer: θ_i = theta^(-2i/hd)  (Su et al. 2021 eq. 15)
        self.rope = RotaryEmbedding(cfg.head_dim, max_len=min(cfg.context_length, 4096), theta=cfg.rope_theta)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.dim, cfg.n_head, cfg.ffn_dim, norm_first=True, activation="swiglu",
                             norm="rmsnorm", eps=cfg.norm_eps, bias=False, n_kv_head=cfg.n_kv_head,
                             rope=self.rope)
            for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)          # W_out
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    @property
    def context_length(self) -> int:
        return self.config.context_length

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """A preallocated KV cache: (batch, n_kv_head, max_len, head_dim) per layer — GQA keeps it small."""
        cfg, w = self.config, self.norm.weight
        return KVCache(cfg.n_layer, batch, cfg.n_kv_head, max_len or cfg.context_length, cfg.head_dim,
                       dtype=self.embed.weight.dtype if self.embed.weight.is_floating_point() else w.dtype,
                       device=w.device)

    def forward(self, idx: Tensor, cache: KVCache | None = None, pos: int | Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        """idx: (B, T) token ids -> logits (B, T, vocab).

        cache:          KVCache; idx holds the T positions after the cache.length held ones.
        pos:            ignored beyond its start: RoPE depends only on relative offsets, so the
                        cache slot is the position offset (left padding shifts a whole row equally).
        attention_mask: (B, S) bool, True = real token, over all S = cache.length + T positions.
        """
        B, T = idx.shape
        slot = cache.length if cache is not None else 0                        # where the new keys go
        if isinstance(pos, int):
            slot = pos
        S = slot + T
        if S > self.config.context_length:
            raise ValueError(f"positions up to {S - 1} exceed the context length {self.config.context_length}")
        mask, causal = None, T > 1
        if attention_mask is not None and bool(attention_mask[:, :S].all()):
            attention_mask = None                                              # no padding: plain causal
        if attention_mask is not None:
            keep = causal_mask(T, S, idx.device) & attention_mask[:, None, None, :S].bool()  # (B, 1, T, S)
            # a left-pad query sees no real key; let it see itself so softmax stays finite
            own = torch.ones(T, S, dtype=torch.bool, device=idx.device).tril(S - T).triu(S - T)  # (T, S)
            mask, causal = keep | own, False
        elif cache is not None and slot > 0 and T > 1:
            mask, causal = causal_mask(T, S, idx.device), False                # (T, S)
        x = self.embed(idx)                                                    # (B, T, d)
        for i, block in enumerate(self.blocks):
            # a_l = h + Attn(RMSNorm(h));  h' = a_l + SwiGLU(RMSNorm(a_l))
            x = block(x, mask=mask, causal=causal, cache=cache, layer=i, pos=slot)
        return self.lm_head(self.norm(x))                                      # (B, T, vocab)


# ---- loading ----------------------------------------------------------------------------
# Our module names vs Hugging Face's LlamaForCausalLM and llama.cpp's GGUF tensor names.
_LAYER_NAMES = {  # ours: (HF, GGUF)
    "norm1.weight": ("input_layernorm.weight", "attn_norm.weight"),
    "self_attn.q_proj.weight": ("self_attn.q_proj.weight", "attn_q.weight"),
    "self_attn.k_proj.weight": ("self_attn.k_proj.weight", "attn_k.weight"),
    "self_attn.v_proj.weight": ("self_attn.v_proj.weight", "attn_v.weight"),
    "self_attn.o_proj.weight": ("self_attn.o_proj.weight", "attn_output.weight"),
    "norm2.weight": ("post_attention_layernorm.weight", "ffn_norm.weight"),
    "ffn.gate_proj.weight": ("mlp.gate_proj.weight", "ffn_gate.weight"),
    "ffn.up_proj.weight": ("mlp.up_proj.weight", "ffn_up.weight"),
    "ffn.down_proj.weight": ("mlp.down_proj.weight", "ffn_down.weight"),
}
_TOP_NAMES = {"embed.weight": ("model.embed_tokens.weight", "token_embd.weight"),
              "norm.weight": ("model.norm.weight", "output_norm.weight"),
              "lm_head.weight": ("lm_head.weight", "output.weight")}


def _name_map(cfg: LlamaConfig, source: int) -> dict[str, str]:
    """ours -> source name (source 0: HF, 1: GGUF), for every tensor of the model."""
    names = {ours: src[source] for ours, src in _TOP_NAMES.items()
             if not (cfg.tie_embeddings and ours == "lm_head.weight")}
    for i in range(cfg.n_layer):
        prefix = f"model.layers.{i}." if source == 0 else f"blk.{i}."
        names.update({f"blocks.{i}.{ours}": prefix + src[source] for ours, src in _LAYER_NAMES.items()})
    return names


def from_hf_state_dict(sd: dict[str, Tensor], cfg: LlamaConfig) -> Llama:
    """Our Llama with the weights of a Hugging Face LlamaForCausalLM state dict."""
    model = Llama(cfg)
    _load(model, {ours: sd[hf] for ours, hf in _name_map(cfg, 0).items()})
    return model.eval()


def _load(model: Llama, sd: dict[str, Tensor], assign: bool = False) -> None:
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=assign)
    missing = [k for k in missing if not (model.config.tie_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def unpermute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (convert_hf_to_gguf.py `permute`).

    llama.cpp rotates adjacent pairs (2i, 2i+1); HF rotates (i, i + hd/2) (rotate_half). Its
    converter reorders each head's rows from [x_0..x_{h-1}, y_0..y_{h-1}] to [x_0, y_0, x_1, y_1, ...]
    (h = hd/2); we read rows back as (head, h, pair) and swap to (head, pair, h).
    """
    out_dim = w.shape[0]
    # (n_head, hd/2, 2, in) -> (n_head, 2, hd/2, in) -> (out, in)
    return w.reshape(n_head, out_dim // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_state_dict(gguf_file: Any, cfg: LlamaConfig) -> dict[str, np.ndarray]:
    """ours -> float32 numpy weights from an open GGUFFile (all tensors dequantised)."""
    sd = {}
    for ours, src in _name_map(cfg, 1).items():
        w = gguf_file.tensor(src)
        if ours.endswith("q_proj.weight"):
            w = unpermute_rope_rows(w, cfg.n_head)
        elif ours.endswith("k_proj.weight"):
            w = unpermute_rope_rows(w, cfg.n_kv_head)
        sd[ours] = w
    return sd


def from_gguf(path: str | Path, dtype: torch.dtype = torch.float32, keep_quantized: bool = False) -> Llama:
    """Our Llama from a llama.cpp GGUF file, every weight dequantised to `dtype`.

    keep_quantized: linear layers whose tensor is stored as Q8_0 / Q4_0 / Q4_1 blocks keep those
    blocks (deepatlas.quant.linear.BlockQuantLinear, dequantised on the fly at each call).
    """
    f = read_gguf(path)
    cfg = LlamaConfig.from_gguf_metadata(f.metadata, has_output="output.weight" in f.tensors)
    with torch.device("meta"):
        model = Llama(cfg)
    sd = {k: torch.from_numpy(v).to(dtype) for k, v in gguf_state_dict(f, cfg).items()}
    _load(model, sd, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    model.rope = RotaryEmbedding(cfg.head_dim, max_len=min(cfg.context_length, 4096), theta=cfg.rope_theta)
    for block in model.blocks:
        block.self_attn.rope = model.rope
    model.gguf_metadata = f.metadata  # the tokenizer and chat template live here too
    if keep_quantized:
        _keep_blocks(model, f)
    return model.eval()


def _keep_blocks(model: Llama, f: Any) -> None:
    """Swap each nn.Linear whose GGUF tensor is block-quantised for a BlockQuantLinear of its blocks."""
    from deepatlas.quant.linear import BlockQuantLinear

    cfg = model.config
    names = _name_map(cfg, 1)
    if cfg.tie_embeddings:
        names["lm_head.weight"] = names["embed.weight"]
    for ours, src in names.items():
        module_name = ours.rsplit(".", 1)[0]
        module, info = model.get_submodule(module_name), f.tensors[src]
        if not isinstance(module, nn.Linear) or info.type_name not in ("Q8_0", "Q4_0", "Q4_1"):
            continue
        rows = f.raw(src).reshape(info.shape[0], -1)                           # (out, row bytes)
        if ours.endswith("q_proj.weight"):  # the RoPE row permutation moves whole rows of blocks
            rows = unpermute_rope_rows(rows, cfg.n_head)
        elif ours.endswith("k_proj.weight"):
            rows = unpermute_rope_rows(rows, cfg.n_kv_head)
        parent, _, child = module_name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child,
                BlockQuantLinear(rows, info.ggml_type, info.shape))


@functools.lru_cache(maxsize=1)  # loading takes ~30 s: tests and the experiment share one
def hf_reference_from_gguf(path: str | Path) -> Any:
    """The reference: transformers' LlamaForCausalLM with transformers' own GGUF conversion
    (gguf.dequantize + its reverse permutation), fp32. Needs `transformers` and `gguf`.

    `from_pretrained(..., gguf_file=...)` would need `accelerate` only to place the weights, so we
    build the model on the meta device and assign transformers' converted state dict. Its config
    comes from our metadata (AutoConfig would parse the whole file a second time).
    """
    import warnings
    from unittest import mock

    import transformers

    path = Path(path)
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    with warnings.catch_warnings(), mock.patch.object(gguf_utils, "tqdm", lambda it, **_: it):  # no progress bar
        warnings.simplefilter("ignore")
        config = config_to_hf(LlamaConfig.from_gguf_metadata(read_gguf(path).metadata))
        with torch.device("meta"):
            hf = transformers.LlamaForCausalLM(config)
        tensors = gguf_utils.load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=hf)["tensors"]
    missing, unexpected = hf.load_state_dict(tensors, strict=False, assign=True)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise ValueError(f"transformers' GGUF conversion does not fit: missing {missing}, unexpected {unexpected}")
    if "lm_head.weight" in missing:
        hf.lm_head.weight = hf.model.embed_tokens.weight
    hf.model.rotary_emb = type(hf.model.rotary_emb)(config=config)  # its inv_freq was built on meta
    return hf.eval()
