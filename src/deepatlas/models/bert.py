"""BERT, and ALBERT's factorised, shared variant: a bidirectional post-LN Transformer encoder.

Devlin et al. 2019 ("BERT: Pre-training of deep bidirectional transformers", §3, Fig. 2):

    h_0 = LN(E_tok[x] + E_pos[t] + E_seg[s])          token + learned position + segment embeddings
    a_l = LN(h_{l-1} + Attn(h_{l-1}))                  post-LN (Vaswani et al. 2017 §3.1), no causal mask
    h_l = LN(a_l + FFN(a_l)),  FFN(x) = GELU(x W_1 + b_1) W_2 + b_2
    pooled = tanh(W_p h_L[CLS] + b_p)                  the pooler, input of NSP and classifiers

Pre-training heads (§3.1, Appendix A.1):
    MLM:  P(x_t | x_masked) = softmax(LN(GELU(W h_t + b)) E_tokᵀ + b_V)  (output tied to E_tok)
    NSP:  P(IsNext | A, B) = softmax(W_nsp pooled)      (label 0 = B follows A, HF's convention)

ALBERT (Lan et al. 2020, §3.1): factorised embeddings (E_tok is V×E with E ≪ H, then one E→H
projection: V·E + E·H parameters instead of V·H) and cross-layer sharing (one block applied
n_layer times). Config `embedding_size` and `share_layers` switch both on.

Built from deepatlas.nn (TransformerBlock post-norm, MultiHeadAttention, LearnedPositions,
LayerNorm). Hugging Face BertModel / BertForMaskedLM / BertForPreTraining / AlbertModel weights
load through the name maps below (tests/models/test_bert.py checks outputs equal HF's).
Sentence embeddings and the real all-MiniLM-L6-v2: deepatlas.models.sentence_encoder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.nn.blocks import TransformerBlock
from deepatlas.nn.ffn import activate
from deepatlas.nn.norms import LayerNorm
from deepatlas.nn.positions import LearnedPositions

IGNORE = -100          # label of a position that is not predicted (torch's and HF's default)
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "relu": "relu", "silu": "silu"}


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    n_layer: int = 12
    n_head: int = 12
    intermediate_size: int = 3072
    max_position: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"          # exact erf GELU (BERT); ALBERT: gelu_tanh
    dropout: float = 0.1              # embeddings, attention weights, residual branches
    pad_id: int = 0
    embedding_size: int | None = None  # ALBERT: E < hidden_size (None = hidden_size, BERT)
    share_layers: bool = False         # ALBERT: one block's weights for all n_layer layers
    fast: bool = True                  # fused SDPA; False = the plain softmax(QKᵀ/√d)V path

    @property
    def embed_dim(self) -> int:
        return self.embedding_size or self.hidden_size

    @classmethod
    def from_hf(cls, hf: Any) -> BertConfig:
        """From a HF BertConfig / AlbertConfig (object or config.json dict)."""
        d = hf if isinstance(hf, dict) else hf.to_dict()
        act = d.get("hidden_act", "gelu")
        if act not in HF_ACTIVATIONS:
            raise ValueError(f"hidden_act {act!r} has no counterpart; valid: {', '.join(HF_ACTIVATIONS)}")
        albert = d.get("model_type") == "albert"
        if albert and (d.get("num_hidden_groups", 1) != 1 or d.get("inner_group_num", 1) != 1):
            raise ValueError("only ALBERT with num_hidden_groups=1 and inner_group_num=1 is supported, got "
                             f"{d.get('num_hidden_groups')} and {d.get('inner_group_num')}")
        return cls(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], n_layer=d["num_hidden_layers"],
                   n_head=d["num_attention_heads"], intermediate_size=d["intermediate_size"],
                   max_position=d["max_position_embeddings"], type_vocab_size=d["type_vocab_size"],
                   layer_norm_eps=d["layer_norm_eps"], activation=HF_ACTIVATIONS[act],
                   dropout=d.get("hidden_dropout_prob", 0.1), pad_id=d.get("pad_token_id") or 0,
                   embedding_size=d["embedding_size"] if albert else None, share_layers=albert)

    def to_hf(self) -> dict:
        """Keyword arguments of HF's BertConfig (or AlbertConfig when share_layers)."""
        act = {"gelu": "gelu", "gelu_tanh": "gelu_new"}.get(self.activation, self.activation)
        d = dict(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.n_layer,
                 num_attention_heads=self.n_head, intermediate_size=self.intermediate_size,
                 max_position_embeddings=self.max_position, type_vocab_size=self.type_vocab_size,
                 layer_norm_eps=self.layer_norm_eps, hidden_act=act, hidden_dropout_prob=self.dropout,
                 attention_probs_dropout_prob=self.dropout, pad_token_id=self.pad_id)
        if self.share_layers:
            d["embedding_size"] = self.embed_dim
        return d


def param_count(cfg: BertConfig, pooler: bool = True) -> int:
    """Parameters of the encoder from the formula (Lan et al. 2020 §3.1 for the embedding part).

    embeddings  (V + P + S)·E + 2E  (+ E·H + H when E ≠ H: ALBERT's projection)
    one layer   4(H² + H) attention + 2H LN + (H·I + I) + (I·H + H) FFN + 2H LN
    layers      L of them, or 1 when shared;  pooler H² + H."""
    V, P, S, E, H, I = (cfg.vocab_size, cfg.max_position, cfg.type_vocab_size, cfg.embed_dim,
                        cfg.hidden_size, cfg.intermediate_size)
    embeddings = (V + P + S) * E + 2 * E + (E * H + H if E != H else 0)
    layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
    return embeddings + layer * (1 if cfg.share_layers else cfg.n_layer) + (H * H + H if pooler else 0)


class BertEmbeddings(nn.Module):
    """ids (B, T), token_type_ids (B, T) -> LN(E_tok[x] + E_pos[t] + E_seg[s]) (B, T, E)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        E = cfg.embed_dim
        self.word = nn.Embedding(cfg.vocab_size, E, padding_idx=cfg.pad_id)
        self.position = LearnedPositions(E, cfg.max_position)
        self.token_type = nn.Embedding(cfg.type_vocab_size, E)
        self.norm = LayerNorm(E, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        T = ids.size(1)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(ids)
        # E_tok[x] + E_pos[t] + E_seg[s]                                    (B, T, E)
        x = self.word(ids) + self.position(T) + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class BertOutput(NamedTuple):
    last_hidden_state: Tensor            # (B, T, H)
    pooled: Tensor                       # (B, H): tanh(W_p h[CLS] + b_p)
    hidden_states: tuple[Tensor, ...]    # (h_0, ..., h_L) when asked for, else ()


class Bert(nn.Module):
    """The encoder: forward(ids, attention_mask, token_type_ids) -> BertOutput."""

    def __init__(self, cfg: BertConfig, pooler: bool = True):
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        # ALBERT's factorisation: embeddings of size E, projected once to H
        self.embed_proj = nn.Linear(cfg.embed_dim, cfg.hidden_size) if cfg.embed_dim != cfg.hidden_size else None
        n_blocks = 1 if cfg.share_layers else cfg.n_layer
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.hidden_size, cfg.n_head, cfg.intermediate_size, norm_first=False,
                             dropout=cfg.dropout, activation=cfg.activation, eps=cfg.layer_norm_eps)
            for _ in range(n_blocks))
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size) if pooler else None
        self.apply(_init_weights)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                output_hidden_states: bool = False) -> BertOutput:
        """ids (B, T); attention_mask (B, T), 1/True = real token, 0/False = padding."""
        cfg = self.config
        if ids.dim() != 2:
            raise ValueError(f"ids must be (batch, length), got shape {tuple(ids.shape)}")
        if ids.size(1) > cfg.max_position:
            raise ValueError(f"{ids.size(1)} tokens exceed the model's {cfg.max_position} positions; truncate")
        pad = None
        if attention_mask is not None and not bool(attention_mask.all()):
            pad = ~attention_mask.bool()                                    # (B, T), True = padding
        x = self.embeddings(ids, token_type_ids)                            # (B, T, E)
        if self.embed_proj is not None:
            x = self.embed_proj(x)                                          # (B, T, H)
        states = [x]
        for layer in range(cfg.n_layer):
            block = self.blocks[0 if cfg.share_layers else layer]
            # bidirectional: every token attends to every real token (no causal mask)
            x = block(x, key_padding_mask=pad, fast=cfg.fast)               # (B, T, H)
            states.append(x)
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else x[:, 0]  # (B, H)
        return BertOutput(x, pooled, tuple(states) if output_hidden_states else ())


def _init_weights(m: nn.Module) -> None:
    """BERT's initialisation: N(0, 0.02) weights, zero biases (LayerNorm: 1 and 0 already)."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)
    if isinstance(m, LearnedPositions):
        nn.init.normal_(m.weight, std=0.02)


class MLMHead(nn.Module):
    """h (.., H) -> vocabulary logits (.., V): LN(GELU(W h + b)) E_tokᵀ + b_V, tied to E_tok."""

    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.activation = cfg.activation
        self.dense = nn.Linear(cfg.hidden_size, cfg.embed_dim)
        self.norm = LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.word = word_embeddings                                 # shared, not a copy
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, h: Tensor) -> Tensor:
        h = self.norm(activate(self.dense(h), self.activation))     # (.., E)
        return F.linear(h, self.word.weight, self.bias)             # (.., V)


class BertForPreTraining(nn.Module):
    """BERT + MLM head (+ NSP head unless nsp=False, as RoBERTa, Liu et al. 2019 §4.2)."""

    def __init__(self, cfg: BertConfig, nsp: bool = True):
        super().__init__()
        self.config = cfg
        self.bert = Bert(cfg)
        self.mlm = MLMHead(cfg, self.bert.embeddings.word)
        self.nsp = nn.Linear(cfg.hidden_size, 2) if nsp else None
        for m in (self.mlm.dense, self.nsp):
            if m is not None:
                _init_weights(m)

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """-> MLM logits (B, T, V), NSP logits (B, 2) or None."""
        out = self.bert(ids, attention_mask, token_type_ids)
        return self.mlm(out.last_hidden_state), None if self.nsp is None else self.nsp(out.pooled)

    def loss(self, ids: Tensor, labels: Tensor, attention_mask: Tensor | None = None,
             token_type_ids: Tensor | None = None, next_sentence_label: Tensor | None = None) -> Tensor:
        """Cross-entropy of the masked positions (labels ≠ -100) (+ the NSP cross-entropy).

        Only the masked rows go through the vocabulary projection: with 15% masked that is ~7×
        less of the largest matmul than projecting every position (the loss is the same)."""
        out = self.bert(ids, attention_mask, token_type_ids)
        picked = labels != IGNORE                                            # (B, T)
        logits = self.mlm(out.last_hidden_state[picked])                     # (n_masked, V)
        loss = F.cross_entropy(logits, labels[picked])
        if next_sentence_label is not None:
            if self.nsp is None:
                raise ValueError("this model has no NSP head (nsp=False) but got next_sentence_label")
            loss = loss + F.cross_entropy(self.nsp(out.pooled), next_sentence_label)
        return loss


# ---- Hugging Face weights -------------------------------------------------------------------
# ours -> (BERT name, ALBERT name); BERT layers sit under encoder.layer.{i}., ALBERT's one shared
# layer under encoder.albert_layer_groups.0.albert_layers.0.
_LAYER = {"self_attn.q_proj": ("attention.self.query", "attention.query"),
          "self_attn.k_proj": ("attention.self.key", "attention.key"),
          "self_attn.v_proj": ("attention.self.value", "attention.value"),
          "self_attn.o_proj": ("attention.output.dense", "attention.dense"),
          "norm1": ("attention.output.LayerNorm", "attention.LayerNorm"),
          "ffn.up_proj": ("intermediate.dense", "ffn"),
          "ffn.down_proj": ("output.dense", "ffn_output"),
          "norm2": ("output.LayerNorm", "full_layer_layer_norm")}
_TOP = {"embeddings.word": ("embeddings.word_embeddings",) * 2,
        "embeddings.position": ("embeddings.position_embeddings",) * 2,
        "embeddings.token_type": ("embeddings.token_type_embeddings",) * 2,
        "embeddings.norm": ("embeddings.LayerNorm",) * 2,
        "embed_proj": (None, "encoder.embedding_hidden_mapping_in"),
        "pooler": ("pooler.dense", "pooler")}
_HEADS = {"mlm.dense": ("cls.predictions.transform.dense", "predictions.dense"),
          "mlm.norm": ("cls.predictions.transform.LayerNorm", "predictions.LayerNorm"),
          "nsp": ("cls.seq_relationship", None)}


def hf_name_map(cfg: BertConfig, pooler: bool = True) -> dict[str, str]:
    """Our Bert's parameter names -> HF BertModel / AlbertModel names (without "bert." prefix)."""
    src = 1 if cfg.share_layers else 0
    names = {}
    for ours, theirs in _TOP.items():
        if theirs[src] is None or (ours == "pooler" and not pooler) or (ours == "embed_proj" and cfg.embed_dim == cfg.hidden_size):
            continue
        tables = ours in ("embeddings.word", "embeddings.position", "embeddings.token_type")
        for p in ("weight",) if tables else ("weight", "bias"):   # embedding tables have no bias
            names[f"{ours}.{p}"] = f"{theirs[src]}.{p}"
    for i in range(1 if cfg.share_layers else cfg.n_layer):
        prefix = "encoder.albert_layer_groups.0.albert_layers.0." if cfg.share_layers else f"encoder.layer.{i}."
        for ours, theirs in _LAYER.items():
            for p in ("weight", "bias"):
                names[f"blocks.{i}.{ours}.{p}"] = f"{prefix}{theirs[src]}.{p}"
    return names


def _strip_prefix(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF task models keep the encoder under "bert." / "albert."; BertModel's state dict does not."""
    for prefix in ("bert.", "albert."):
        if any(k.startswith(prefix) for k in sd):
            return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}
    return sd


def load_hf_encoder(model: Bert, sd: dict[str, Tensor]) -> Bert:
    """Copy a HF BertModel / AlbertModel state dict (or a task model's) into `model`."""
    sd = _strip_prefix(sd)
    names = hf_name_map(model.config, pooler=model.pooler is not None)
    missing = [hf for hf in names.values() if hf not in sd]
    if missing:
        raise ValueError(f"weights do not fit the model: missing {missing[:5]} "
                         f"({len(missing)} in all); the state dict has e.g. {list(sd)[:5]}")
    mine = {ours: sd[hf] for ours, hf in names.items()}
    result = model.load_state_dict(mine, strict=False)
    if result.missing_keys:
        raise ValueError(f"parameters left without weights: {result.missing_keys[:5]}")
    return model


def from_hf_state_dict(sd: dict[str, Tensor], cfg: BertConfig) -> Bert:
    """Our Bert with the weights of a HF BertModel / AlbertModel state dict."""
    has_pooler = any(k.startswith("pooler") for k in _strip_prefix(sd))
    return load_hf_encoder(Bert(cfg, pooler=has_pooler), sd).eval()


def pretraining_from_hf_state_dict(sd: dict[str, Tensor], cfg: BertConfig) -> BertForPreTraining:
    """Ours from HF BertForMaskedLM (no NSP), BertForPreTraining, or AlbertForMaskedLM weights."""
    src = 1 if cfg.share_layers else 0
    nsp = _HEADS["nsp"][src] is not None and f"{_HEADS['nsp'][src]}.weight" in sd
    model = BertForPreTraining(cfg, nsp=nsp)
    if not any(k.startswith(("bert.pooler", "albert.pooler")) for k in sd):
        model.bert.pooler = None
    load_hf_encoder(model.bert, sd)
    heads = {f"{ours}.{p}": f"{theirs[src]}.{p}" for ours, theirs in _HEADS.items()
             if theirs[src] is not None and (ours != "nsp" or nsp) for p in ("weight", "bias")}
    bias = "cls.predictions.bias" if src == 0 else "predictions.bias"
    state = {ours: sd[hf] for ours, hf in heads.items()} | {"mlm.bias": sd[bias]}
    model.load_state_dict(state, strict=False)
    return model.eval()


def from_pretrained(directory: str | Path) -> Bert:
    """A local HF BERT/ALBERT folder (config.json + model.safetensors); never downloads."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} has no {name}; a HF BERT folder holds config.json "
                                    "and model.safetensors")
    cfg = BertConfig.from_hf(json.loads((directory / "config.json").read_text()))
    return from_hf_state_dict(load_file(str(directory / "model.safetensors")), cfg)

