"""GPT-2: a decoder-only Transformer trained as a causal language model (map place L2).

Radford et al. 2019 ("Language Models are Unsupervised Multitask Learners"), the GPT-1 decoder
(Radford et al. 2018) with the LayerNorm moved to the input of each sub-block (pre-LN) and a final
LayerNorm after the last block:

    h_0 = W_e[x] + W_p[pos]                                 token + learned position embeddings
    a_l = h_{l-1} + Attn(LN(h_{l-1}))                       causal multi-head self-attention
    h_l = a_l + FFN(LN(a_l)),  FFN(x) = GELU_tanh(x W_1 + b_1) W_2 + b_2
    P(x_{t+1} | x_≤t) = softmax(LN(h_L) W_eᵀ)               output head tied to the embedding

Built from deepatlas.nn (MultiHeadAttention, KVCache, LayerNorm); Hugging Face's GPT-2 weights
load by splitting its fused `c_attn` into q/k/v and transposing its Conv1D weights (below).
The forward is the decoding interface of deepatlas.generation.decode:
    model(idx, cache=..., pos=..., attention_mask=...) -> logits.

The defaults are GPT-2. The options of the last years' small-model "speedruns" (modded-nanoGPT;
the L2 experiment gpt-speedrun ablates each) are config fields, each a few lines below:
    positions="rope"       rotary positions in every attention (Su et al. 2021), no W_p
    norm="rmsnorm"         RMSNorm (Zhang & Sennrich 2019) instead of LayerNorm
    qk_norm=True           RMSNorm on each head's q and k (Henry et al. 2020)
    activation="relu2"     ReLU² (So et al. 2021) or "swiglu" (Shazeer 2020) in the FFN
    tie_head=False         an output head of its own instead of W_eᵀ
    zero_init_proj=True    residual output projections (and an untied head) start at 0, so each
                           block starts as the identity (modded-nanoGPT; "ReZero"-like, Bachlechner et al. 2020)
    logit_softcap=c        logits ← c·tanh(logits / c) (Gemma 2, Team et al. 2024)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.nn.attention import KVCache
from deepatlas.nn.blocks import TransformerBlock, make_norm
from deepatlas.nn.masks import causal_mask
from deepatlas.nn.positions import LearnedPositions, RotaryEmbedding


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024      # context length (number of learned positions)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0        # GPT-2 used 0.1 on embeddings, residuals and attention weights
    bias: bool = True
    layer_norm_eps: float = 1e-5
    fast: bool = True           # fused SDPA kernel; False = the plain softmax(QKᵀ/√d)V path
    # the speedrun options (module docstring); the defaults are GPT-2's
    positions: str = "learned"  # learned | rope
    norm: str = "layernorm"     # layernorm | rmsnorm
    activation: str = "gelu_tanh"
    qk_norm: bool = False
    tie_head: bool = True
    zero_init_proj: bool = False
    logit_softcap: float = 0.0  # 0 = off


# The published GPT-2 sizes (Radford et al. 2019, Table 2) and nanoGPT's Shakespeare-char model.
PRESETS: dict[str, dict] = {
    "char-small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),           # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),   # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),    # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),       # 1558M
}


def preset(name: str, **changes) -> GPTConfig:
    """GPTConfig of a named size, e.g. preset("char-small", vocab_size=65)."""
    if name not in PRESETS:
        raise ValueError(f"unknown GPT preset {name!r}; valid: {', '.join(PRESETS)}")
    return replace(GPTConfig(**PRESETS[name]), **changes)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        if cfg.positions not in ("learned", "rope"):
            raise ValueError(f"positions={cfg.positions!r}; valid: learned, rope")
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)           # W_e
        self.wpe = LearnedPositions(cfg.n_embd, cfg.block_size) if cfg.positions == "learned" else None  # W_p
        rope = RotaryEmbedding(cfg.n_embd // cfg.n_head, cfg.block_size) if cfg.positions == "rope" else None
        self.drop = nn.Dropout(cfg.dropout)
        # pre-LN blocks: x + Attn(LN(x)), then x + FFN(LN(x)), FFN with the tanh GELU
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.n_embd, cfg.n_head, 4 * cfg.n_embd, norm_first=True,
                             dropout=cfg.dropout, activation=cfg.activation, norm=cfg.norm,
                             eps=cfg.layer_norm_eps, bias=cfg.bias, rope=rope, qk_norm=cfg.qk_norm)
            for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg.norm, cfg.n_embd, cfg.layer_norm_eps, cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_head:
            self.lm_head.weight = self.wte.weight                     # weight tying (Press & Wolf 2017)
        self.apply(self._init_weights)
        if self.wpe is not None:
            nn.init.normal_(self.wpe.weight, mean=0.0, std=0.02)
        # GPT-2 §2.3: residual projections scaled by 1/√N at init, N = 2 n_layer residual adds;
        # zero_init_proj: exactly 0, so every block adds nothing at step 0
        for name, p in self.named_parameters():
            if name.endswith(("attn.o_proj.weight", "ffn.down_proj.weight")):
                if cfg.zero_init_proj:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if cfg.zero_init_proj and not cfg.tie_head:
            nn.init.zeros_(self.lm_head.weight)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def context_length(self) -> int:
        return self.config.block_size

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def num_params(self, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())                 # tied head counted once
        if embeddings:
            return n
        return n - self.wte.weight.numel() - (0 if self.wpe is None else self.wpe.weight.numel())

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """A preallocated KV cache for `batch` rows of up to `max_len` (default: context) positions."""
        cfg, w = self.config, self.wte.weight
        return KVCache(cfg.n_layer, batch, cfg.n_head, max_len or cfg.block_size,
                       cfg.n_embd // cfg.n_head, dtype=w.dtype, device=w.device)

    def forward(self, idx: Tensor, cache: KVCache | None = None, pos: int | Tensor | None = None,
                attention_mask: Tensor | None = None) -> Tensor:
        """idx: (B, T) token ids -> logits (B, T, vocab).

        cache:          KVCache; idx then holds the T positions after the cache.length held ones.
        pos:            position ids, an int offset or (B, T) per row (left-padded batches);
                        default cache.length + arange(T).
        attention_mask: (B, S) bool, True = real token, over all S = cache.length + T positions.
        """
        B, T = idx.shape
        slot = cache.length if cache is not None else 0                # where the new keys go
        S = slot + T
        if pos is None or isinstance(pos, int):
            start = slot if pos is None else pos
            pos = torch.arange(start, start + T, device=idx.device).expand(B, T)  # (B, T)
        if int(pos.max()) >= self.config.block_size or S > self.config.block_size:
            raise ValueError(f"positions up to {max(int(pos.max()), S - 1)} exceed the context "
                             f"length {self.config.block_size} of this model")
        if attention_mask is not None and bool(attention_mask[:, :S].all()):
            attention_mask = None                                      # nothing padded: plain causal
        mask = None         # None: causal=True in attention (T == S: SDPA's own causal kernel;
        if attention_mask is not None:                  # T == 1 after the cache: no mask at all)
            keep = causal_mask(T, S, idx.device) & attention_mask[:, None, None, :S]  # (B, 1, T, S)
            # a left-pad query sees no real key; let it see itself so softmax stays finite
            mask = keep | _own_position(T, S, idx.device)
        # h_0 = W_e[x] + W_p[pos]                                       (B, T, d)
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + F.embedding(pos, self.wpe.weight)
        x = self.drop(x)
        # RoPE rotates by position inside attention: per-row positions (left padding) would only
        # shift every row's positions alike, which RoPE's relative form does not see
        for i, block in enumerate(self.blocks):
            x = block(x, mask=mask, causal=mask is None, cache=cache, layer=i, pos=slot,
                      fast=self.config.fast)                            # (B, T, d)
        logits = self.lm_head(self.ln_f(x))                            # (B, T, vocab)
        c = self.config.logit_softcap
        if c > 0:
            logits = c * torch.tanh(logits / c)                        # soft cap: |logit| < c
        return logits


def _own_position(T: int, S: int, device: torch.device) -> Tensor:
    """(T, S) bool: True at (i, S - T + i), the key slot of query i itself."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T).triu(S - T)


def lm_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean next-token cross-entropy −(1/N) Σ log P(x_{t+1} | x_≤t) in nats; batch = (x, y)."""
    x, y = batch
    logits = model(x)                                                  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


# ---- Hugging Face GPT-2 layout -------------------------------------------------------------
# HF's GPT-2 keeps GPT-1's Conv1D modules: weight (in, out), y = x W + b — the transpose of
# nn.Linear's (out, in). Its attention has one fused c_attn = [W_q | W_k | W_v] of shape (d, 3d).

_HF_RENAMES = {"norm1": "ln_1", "norm2": "ln_2", "self_attn.o_proj": "attn.c_proj",
               "ffn.up_proj": "mlp.c_fc", "ffn.down_proj": "mlp.c_proj"}
_CONV1D = ("attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def config_from_hf(hf: dict) -> GPTConfig:
    """GPTConfig from an HF GPT-2 config.json dict."""
    if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"activation {hf['activation_function']!r} is not GPT-2's tanh GELU")
    return GPTConfig(vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"],
                     n_head=hf["n_head"], n_embd=hf["n_embd"],
                     layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                     dropout=hf.get("resid_pdrop", 0.0))


def config_to_hf(cfg: GPTConfig) -> dict:
    """The config.json transformers' GPT2LMHeadModel reads."""
    if not cfg.bias:
        raise ValueError("HF GPT-2 has biases everywhere; a bias=False model has no HF layout")
    gpt2 = GPTConfig()
    changed = [f"{k}={getattr(cfg, k)!r}" for k in ("positions", "norm", "activation", "qk_norm", "tie_head",
                                                     "logit_softcap") if getattr(cfg, k) != getattr(gpt2, k)]
    if changed:
        raise ValueError(f"HF GPT-2 has no layout for {', '.join(changed)} (GPT-2's own options only)")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
            "n_positions": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
            "n_head": cfg.n_head, "n_inner": None, "activation_function": "gelu_new",
            "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
            "layer_norm_epsilon": cfg.layer_norm_eps, "initializer_range": 0.02,
            "tie_word_embeddings": True, "bos_token_id": cfg.vocab_size - 1,
            "eos_token_id": cfg.vocab_size - 1}


def to_hf_state_dict(model: GPT) -> dict[str, Tensor]:
    """Our parameters under HF GPT2LMHeadModel's names and layouts (lm_head left out: tied)."""
    sd = {"transformer.wte.weight": model.wte.weight, "transformer.wpe.weight": model.wpe.weight,
          "transformer.ln_f.weight": model.ln_f.weight, "transformer.ln_f.bias": model.ln_f.bias}
    for i, blk in enumerate(model.blocks):
        h = f"transformer.h.{i}."
        at = blk.self_attn
        # c_attn = [W_q | W_k | W_v] as one Conv1D (d, 3d)
        sd[h + "attn.c_attn.weight"] = torch.cat([at.q_proj.weight, at.k_proj.weight, at.v_proj.weight]).t()
        sd[h + "attn.c_attn.bias"] = torch.cat([at.q_proj.bias, at.k_proj.bias, at.v_proj.bias])
        for ours, theirs in _HF_RENAMES.items():
            mod = blk.get_submodule(ours)
            w = mod.weight.t() if theirs in _CONV1D else mod.weight
            sd[h + theirs + ".weight"], sd[h + theirs + ".bias"] = w, mod.bias
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}


def from_hf_state_dict(sd: dict[str, Tensor], cfg: GPTConfig) -> GPT:
    """A GPT holding the weights of an HF GPT2LMHeadModel state dict (its buffers are ignored)."""
    sd = {k.removeprefix("model."): v for k, v in sd.items()}
    model = GPT(cfg)
    ours: dict[str, Tensor] = {"wte.weight": sd["transformer.wte.weight"],
                               "wpe.weight": sd["transformer.wpe.weight"],
                               "ln_f.weight": sd["transformer.ln_f.weight"],
                               "ln_f.bias": sd["transformer.ln_f.bias"]}
    for i in range(cfg.n_layer):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        # split c_attn (d, 3d) into q, k, v; Conv1D (in, out) -> Linear (out, in)
        for name, w, bias in zip(("q", "k", "v"), sd[h + "attn.c_attn.weight"].t().chunk(3),
                                 sd[h + "attn.c_attn.bias"].chunk(3)):
            ours[b + f"self_attn.{name}_proj.weight"], ours[b + f"self_attn.{name}_proj.bias"] = w, bias
        for mine, theirs in _HF_RENAMES.items():
            w = sd[h + theirs + ".weight"]
            ours[b + mine + ".weight"] = w.t() if theirs in _CONV1D else w
            ours[b + mine + ".bias"] = sd[h + theirs + ".bias"]
    ours["lm_head.weight"] = ours["wte.weight"]
    model.load_state_dict({k: v.contiguous() for k, v in ours.items()}, strict=True)
    return model


def save_pretrained_hf(model: GPT, directory: str | Path) -> Path:
    """Write config.json + model.safetensors in HF's layout: GPT2LMHeadModel.from_pretrained(dir)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config_to_hf(model.config), indent=2))
    save_file(to_hf_state_dict(model), str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


def from_pretrained_hf(directory: str | Path) -> GPT:
    """Load a local HF GPT-2 folder (config.json + model.safetensors); never downloads."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} not found: a GPT-2 folder in HF layout needs "
                                    f"config.json and model.safetensors")
    cfg = config_from_hf(json.loads((directory / "config.json").read_text()))
    return from_hf_state_dict(load_file(str(directory / "model.safetensors")), cfg)
