"""Whisper (Radford et al. 2022, "Robust speech recognition via large-scale weak supervision", §2.2, Fig. 1).

    encoder  log-mel (B, 80, 3000) -> GELU(conv1 k3) -> GELU(conv2 k3 stride 2)   (B, d, 1500)
             + sinusoidal positions, pre-norm Transformer blocks, final LayerNorm   (B, 1500, d)
    decoder  tokens + learned positions, pre-norm blocks with causal self-attention and
             cross-attention over the audio, final LayerNorm, logits = h Eᵀ (tied embedding)

The blocks are deepatlas.nn's TransformerBlock (norm_first, GELU). A decoder step here reuses
each block's sublayers but reads the cross-attention keys/values of the audio, computed once per
utterance (`cross_kv`), instead of projecting the 1500 audio positions again at every token.

Decoding (openai/whisper decoding.py): the prompt <|startoftranscript|> (+ <|notimestamps|>),
suppressed tokens at every step and blank/EOT at the first, and — with timestamps — the
timestamp rules: pairs of timestamp tokens, never decreasing, and a timestamp forced when the
timestamps together are more likely than any text token. Search: deepatlas.generation.beam.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.generation.beam import beam_decode, make_step
from deepatlas.nn.attention import KVCache, scaled_dot_product
from deepatlas.nn.blocks import TransformerBlock, make_norm


@dataclass
class WhisperConfig:
    n_mels: int = 80
    n_audio_ctx: int = 1500        # audio positions after the stride-2 conv (30 s)
    d_model: int = 384
    n_head: int = 6
    n_audio_layer: int = 4
    n_text_ctx: int = 448
    n_text_layer: int = 4
    n_vocab: int = 51864


@dataclass
class SpecialTokens:
    """Ids of Whisper's control tokens (tiny.en defaults; multilingual models shift them by 1)."""
    eot: int = 50256
    sot: int = 50257
    no_timestamps: int = 50362
    timestamp_begin: int = 50363
    suppress: list[int] = field(default_factory=list)         # never produced
    suppress_begin: list[int] = field(default_factory=lambda: [220, 50256])   # not first (blank, EOT)
    prefix: list[int] = field(default_factory=list)           # language/task tokens after sot


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """Whisper's encoder positions: [sin(p·ω_i) ‖ cos(p·ω_i)], ω_i = max_timescale^(−i/(C/2 − 1))."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float64))
    t = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]    # (length, C/2)
    return torch.cat([t.sin(), t.cos()], dim=1).float()


class Whisper(nn.Module):
    def __init__(self, cfg: WhisperConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        block = dict(d_model=d, n_head=cfg.n_head, d_ff=4 * d, norm_first=True, activation="gelu")
        self.conv1 = nn.Conv1d(cfg.n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("audio_positions", sinusoids(cfg.n_audio_ctx, d))
        self.encoder = nn.ModuleList(TransformerBlock(**block) for _ in range(cfg.n_audio_layer))
        self.encoder_norm = make_norm("layernorm", d, 1e-5)
        self.token_embedding = nn.Embedding(cfg.n_vocab, d)
        self.text_positions = nn.Parameter(torch.zeros(cfg.n_text_ctx, d))
        self.decoder = nn.ModuleList(TransformerBlock(**block, cross_attention=True)
                                     for _ in range(cfg.n_text_layer))
        self.decoder_norm = make_norm("layernorm", d, 1e-5)

    # ---- encoder --------------------------------------------------------------------------------
    def encode(self, mel: Tensor) -> Tensor:
        """mel (B, n_mels, frames) -> audio features (B, frames / 2, d)."""
        if mel.dim() != 3 or mel.size(1) != self.cfg.n_mels:
            raise ValueError(f"mel should be (B, {self.cfg.n_mels}, frames), got {tuple(mel.shape)}")
        x = F.gelu(self.conv1(mel))                                 # (B, d, frames)
        x = F.gelu(self.conv2(x)).transpose(1, 2)                   # (B, frames/2, d)
        if x.size(1) > self.cfg.n_audio_ctx:
            raise ValueError(f"{mel.size(2)} frames give {x.size(1)} audio positions; "
                             f"at most {self.cfg.n_audio_ctx} (cut the audio into 30 s windows)")
        x = x + self.audio_positions[: x.size(1)]
        for blk in self.encoder:
            x = blk(x)
        return self.encoder_norm(x)

    # ---- decoder --------------------------------------------------------------------------------
    def cross_kv(self, audio: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Each decoder layer's cross-attention keys and values of the audio, (B, H, S, hd) each."""
        out = []
        for blk in self.decoder:
            att = blk.cross_attn
            out.append((att._heads(att.k_proj(audio), att.n_kv_head), att._heads(att.v_proj(audio), att.n_kv_head)))
        return out

    def decode(self, tokens: Tensor, cross: list[tuple[Tensor, Tensor]], cache: KVCache | None = None) -> Tensor:
        """tokens (B, T) at positions cache.length.. -> logits (B, T, n_vocab)."""
        pos = cache.length if cache is not None else 0
        B, T = tokens.shape
        if pos + T > self.cfg.n_text_ctx:
            raise ValueError(f"{pos + T} text positions; Whisper has {self.cfg.n_text_ctx}")
        x = self.token_embedding(tokens) + self.text_positions[pos:pos + T]      # (B, T, d)
        for i, blk in enumerate(self.decoder):
            # pre-norm residuals, as TransformerBlock(norm_first=True) computes them
            x = x + blk.self_attn(blk.norm1(x), causal=True, cache=cache, layer=i, pos=pos)
            att, (k, v) = blk.cross_attn, cross[i]
            q = att._heads(att.q_proj(blk.norm_cross(x)), att.n_head)            # (B, H, T, hd)
            y = scaled_dot_product(q, k, v).transpose(1, 2).reshape(B, T, -1)     # softmax(q kᵀ/√hd) v
            x = x + att.o_proj(y)
            x = x + blk.ffn(blk.norm2(x))
        return self.decoder_norm(x) @ self.token_embedding.weight.T              # (B, T, V)

    def forward(self, mel: Tensor, tokens: Tensor) -> Tensor:
        return self.decode(tokens, self.cross_kv(self.encode(mel)))

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        w = self.token_embedding.weight
        return KVCache(self.cfg.n_text_layer, batch, self.cfg.n_head, max_len,
                       self.cfg.d_model // self.cfg.n_head, dtype=w.dtype, device=w.device)

    # ---- transcription --------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, mel: Tensor, special: SpecialTokens, beams: int = 1, timestamps: bool = False,
                 max_new_tokens: int = 224, length_penalty: float = 1.0) -> list[list[int]]:
        """mel (B, n_mels, 3000) -> the best token list per input (prompt and EOT dropped)."""
        prompt = [special.sot, *special.prefix] + ([] if timestamps else [special.no_timestamps])
        max_new_tokens = min(max_new_tokens, self.cfg.n_text_ctx - len(prompt))
        audio = self.encode(mel).repeat_interleave(beams, 0)                    # (B·K, S, d)
        cross = self.cross_kv(audio)
        cache = self.new_cache(audio.size(0), len(prompt) + max_new_tokens)
        base = make_step(lambda t, c: self.decode(t, cross, c), cache)
        rules = WhisperRules(special, len(prompt), timestamps, self.cfg.n_vocab)
        step = lambda tokens, parents: rules(tokens, base(tokens, parents))
        start = torch.tensor([prompt] * mel.size(0), device=mel.device)
        hyps = beam_decode(step, start, beams, max_new_tokens, special.eot, length_penalty)
        return [[t for t in h[0].tokens if t != special.eot] if h else [] for h in hyps]


class WhisperRules:
    """The logit filters of openai/whisper decoding.py: SuppressTokens, SuppressBlank and
    ApplyTimestampRules, applied to log-probabilities (then renormalised, which is the same as
    filtering the logits before the softmax)."""

    def __init__(self, special: SpecialTokens, prompt_len: int, timestamps: bool, n_vocab: int,
                 max_initial_timestamp: int = 50):      # 50 steps of 0.02 s = 1 s
        self.s, self.prompt_len, self.timestamps = special, prompt_len, timestamps
        self.max_initial = max_initial_timestamp
        self.always = torch.zeros(n_vocab, dtype=torch.bool)
        self.always[[t for t in special.suppress if t < n_vocab]] = True
        if timestamps:
            self.always[special.no_timestamps] = True
        else:
            self.always[special.timestamp_begin:] = True

    def __call__(self, tokens: Tensor, logp: Tensor) -> Tensor:
        s, ts = self.s, self.s.timestamp_begin
        logp = logp.masked_fill(self.always.to(logp.device), float("-inf"))
        first = tokens.size(1) == self.prompt_len
        if first:
            logp[:, s.suppress_begin] = float("-inf")
        if self.timestamps:
            for k, row in enumerate(tokens[:, self.prompt_len:].tolist()):
                last_ts = len(row) >= 1 and row[-1] >= ts
                penult_ts = len(row) < 2 or row[-2] >= ts
                if last_ts:
                    if penult_ts:
                        logp[k, ts:] = float("-inf")        # a pair just closed: text or EOT next
                    else:
                        logp[k, :s.eot] = float("-inf")     # an open pair: its closing timestamp or EOT
                stamps = [t for t in row if t >= ts]
                if stamps:   # never decreasing; a segment has non-zero length
                    logp[k, ts:stamps[-1] + (0 if last_ts and not penult_ts else 1)] = float("-inf")
            if first:
                logp[:, :ts] = float("-inf")
                logp[:, ts + self.max_initial + 1:] = float("-inf")
            renorm = logp.log_softmax(-1)
            stamp_mass = renorm[:, ts:].logsumexp(-1)
            force = stamp_mass > renorm[:, :ts].max(-1).values
            logp[force, :ts] = float("-inf")
        return logp.log_softmax(-1)


# ---- Hugging Face names (parity tests, and the bench's transformers model on our weights) ----------

def hf_names(cfg: WhisperConfig) -> dict[str, str]:
    """Our parameter name -> WhisperForConditionalGeneration's. (HF's k_proj has no bias: ours is 0.)"""
    names = {"conv1.weight": "model.encoder.conv1.weight", "conv1.bias": "model.encoder.conv1.bias",
             "conv2.weight": "model.encoder.conv2.weight", "conv2.bias": "model.encoder.conv2.bias",
             "audio_positions": "model.encoder.embed_positions.weight",
             "encoder_norm.weight": "model.encoder.layer_norm.weight", "encoder_norm.bias": "model.encoder.layer_norm.bias",
             "token_embedding.weight": "model.decoder.embed_tokens.weight",
             "text_positions": "model.decoder.embed_positions.weight",
             "decoder_norm.weight": "model.decoder.layer_norm.weight", "decoder_norm.bias": "model.decoder.layer_norm.bias"}
    subs = {"self_attn.q_proj": "self_attn.q_proj", "self_attn.k_proj": "self_attn.k_proj",
            "self_attn.v_proj": "self_attn.v_proj", "self_attn.o_proj": "self_attn.out_proj",
            "norm1": "self_attn_layer_norm", "ffn.up_proj": "fc1", "ffn.down_proj": "fc2", "norm2": "final_layer_norm",
            "cross_attn.q_proj": "encoder_attn.q_proj", "cross_attn.k_proj": "encoder_attn.k_proj",
            "cross_attn.v_proj": "encoder_attn.v_proj", "cross_attn.o_proj": "encoder_attn.out_proj",
            "norm_cross": "encoder_attn_layer_norm"}
    for stack, hf, n in (("encoder", "model.encoder", cfg.n_audio_layer), ("decoder", "model.decoder", cfg.n_text_layer)):
        for i in range(n):
            for ours, theirs in subs.items():
                if stack == "encoder" and (ours.startswith("cross") or ours == "norm_cross"):
                    continue
                for p in ("weight", "bias"):
                    names[f"{stack}.{i}.{ours}.{p}"] = f"{hf}.layers.{i}.{theirs}.{p}"
    return names


def load_hf_state_dict(model: Whisper, sd: dict[str, Tensor]) -> Whisper:
    """Copy a WhisperForConditionalGeneration state dict into `model` (every parameter must be found)."""
    ours = model.state_dict()
    for name, hf in hf_names(model.cfg).items():
        if hf in sd:
            ours[name] = sd[hf].to(ours[name].dtype)
        elif name.endswith("k_proj.bias"):
            ours[name] = torch.zeros_like(ours[name])
        else:
            raise KeyError(f"{hf} (for {name}) missing from the Hugging Face state dict")
    model.load_state_dict(ours)
    return model


def to_hf_state_dict(model: Whisper) -> dict[str, Tensor]:
    """Our weights under Hugging Face's names (k_proj biases, all zero, left out)."""
    sd = model.state_dict()
    out = {hf: sd[name] for name, hf in hf_names(model.cfg).items() if not name.endswith("k_proj.bias")}
    out["proj_out.weight"] = sd["token_embedding.weight"]
    return out
