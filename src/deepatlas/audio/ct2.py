"""CTranslate2's model.bin, read by us, and Whisper's weights mapped out of it.

Layout (CTranslate2 python/ctranslate2/specs/model_spec.py, `_serialize`, binary version ≤ 6),
all little-endian:

    u32 version | str spec name | u32 spec revision | u32 n_variables
    n × ( str name | u8 rank | rank × u32 dims | u8 dtype | u32 n_bytes | n_bytes of data )
    u32 n_aliases | n × ( str alias | str target )
    str = u16 length (with the trailing NUL) | bytes | NUL
    dtype: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16

Every count and size is checked against the bytes left before anything is allocated, and
n_bytes against the product of the dims, so a damaged file ends in one CT2Error line.
Attention weights are stored fused: self-attention linear_0 = [W_q; W_k; W_v], cross-attention
linear_0 = W_q and linear_1 = [W_k; W_v]; Whisper's k projection has no bias (stored as zeros).
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import torch

from deepatlas.models.whisper import SpecialTokens, Whisper, WhisperConfig

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
MAX_RANK = 8


class CT2Error(ValueError):
    """A model.bin this reader cannot use; the message names the offset and the problem."""


class _Reader:
    def __init__(self, data: bytes, path: str):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CT2Error(f"{self.path}: {what} needs {n} bytes at offset {self.pos}, "
                           f"only {len(self.data) - self.pos} left (truncated or not a CTranslate2 model)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.u("H", what + " length")
        raw = self.take(n, what)
        if n == 0 or raw[-1] != 0:
            raise CT2Error(f"{self.path}: {what} at offset {self.pos - n} is not NUL-terminated")
        return raw[:-1].decode("utf-8", errors="replace")


def read_model_bin(path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """-> (spec name, {variable name: tensor}) with aliases resolved to the same tensor."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CT2Error(f"{path}: cannot read ({err.strerror or err})") from None
    r = _Reader(data, path)
    version = r.u("I", "version")
    if not 1 <= version <= 6:
        raise CT2Error(f"{path}: binary version {version}; this reader knows 1..6")
    spec = r.string("spec name") if version >= 2 else ""
    if version >= 2:
        r.u("I", "revision")
    count = r.u("I", "variable count")
    if count > len(data) // 8:
        raise CT2Error(f"{path}: claims {count} variables in {len(data)} bytes")
    out: dict[str, torch.Tensor] = {}
    for _ in range(count):
        name = r.string("variable name")
        rank = r.u("B", f"{name} rank")
        if rank > MAX_RANK:
            raise CT2Error(f"{path}: {name} has rank {rank} (> {MAX_RANK})")
        dims = [r.u("I", f"{name} dims") for _ in range(rank)]
        code = r.u("B", f"{name} dtype")
        if code not in DTYPES:
            raise CT2Error(f"{path}: {name} has dtype code {code}; valid {sorted(DTYPES)}")
        nbytes = r.u("I", f"{name} size")
        item = 2 if DTYPES[code] == "bfloat16" else np.dtype(DTYPES[code]).itemsize
        if nbytes != int(np.prod(dims, dtype=np.int64)) * item:
            raise CT2Error(f"{path}: {name} {dims} of dtype {code} should take "
                           f"{int(np.prod(dims, dtype=np.int64)) * item} bytes, header says {nbytes}")
        raw = r.take(nbytes, name)
        if DTYPES[code] == "bfloat16":
            t = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16) if nbytes else torch.empty(0, dtype=torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, DTYPES[code]).copy())
        out[name] = t.reshape(dims)
    if r.pos < len(data):
        for _ in range(r.u("I", "alias count")):
            alias, target = r.string("alias"), r.string("alias target")
            if target not in out:
                raise CT2Error(f"{path}: alias {alias} -> unknown variable {target}")
            out[alias] = out[target]
    return spec, out


def whisper_from_ct2(directory: str | Path) -> tuple[Whisper, SpecialTokens]:
    """A CTranslate2 Whisper folder (model.bin, config.json) -> our Whisper in fp32 + its control tokens."""
    directory = Path(directory)
    spec, w = read_model_bin(directory / "model.bin")
    if spec != "WhisperSpec":
        raise CT2Error(f"{directory}/model.bin holds a {spec or 'pre-v2'} model, not WhisperSpec")
    g = lambda name: w[name].float()
    layers = lambda stack: len({k.split("/")[1] for k in w if re.match(rf"{stack}/layer_\d+/", k)})
    n_enc, n_dec = layers("encoder"), layers("decoder")
    vocab, d = w["decoder/embeddings/weight"].shape
    cfg = WhisperConfig(n_mels=w["encoder/conv1/weight"].shape[1], n_audio_ctx=w["encoder/position_encodings/encodings"].shape[0],
                        d_model=d, n_head=int(w["encoder/num_heads"]), n_audio_layer=n_enc,
                        n_text_ctx=w["decoder/position_encodings/encodings"].shape[0], n_text_layer=n_dec, n_vocab=vocab)
    sd: dict[str, torch.Tensor] = {}

    def linear(ours: str, theirs: str) -> None:
        sd[f"{ours}.weight"], sd[f"{ours}.bias"] = g(f"{theirs}/weight"), g(f"{theirs}/bias")

    def norm(ours: str, theirs: str) -> None:
        sd[f"{ours}.weight"], sd[f"{ours}.bias"] = g(f"{theirs}/gamma"), g(f"{theirs}/beta")

    def split(ours: list[str], theirs: str) -> None:
        for o, wt, b in zip(ours, g(f"{theirs}/weight").chunk(len(ours)), g(f"{theirs}/bias").chunk(len(ours))):
            sd[f"{o}.weight"], sd[f"{o}.bias"] = wt, b

    linear("conv1", "encoder/conv1")
    linear("conv2", "encoder/conv2")
    sd["audio_positions"] = g("encoder/position_encodings/encodings")
    norm("encoder_norm", "encoder/layer_norm")
    sd["token_embedding.weight"] = g("decoder/embeddings/weight")
    sd["text_positions"] = g("decoder/position_encodings/encodings")
    norm("decoder_norm", "decoder/layer_norm")
    for stack, n in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(n):
            o, t = f"{stack}.{i}", f"{stack}/layer_{i}"
            split([f"{o}.self_attn.q_proj", f"{o}.self_attn.k_proj", f"{o}.self_attn.v_proj"], f"{t}/self_attention/linear_0")
            linear(f"{o}.self_attn.o_proj", f"{t}/self_attention/linear_1")
            norm(f"{o}.norm1", f"{t}/self_attention/layer_norm")
            linear(f"{o}.ffn.up_proj", f"{t}/ffn/linear_0")
            linear(f"{o}.ffn.down_proj", f"{t}/ffn/linear_1")
            norm(f"{o}.norm2", f"{t}/ffn/layer_norm")
            if stack == "decoder":
                linear(f"{o}.cross_attn.q_proj", f"{t}/attention/linear_0")
                split([f"{o}.cross_attn.k_proj", f"{o}.cross_attn.v_proj"], f"{t}/attention/linear_1")
                linear(f"{o}.cross_attn.o_proj", f"{t}/attention/linear_2")
                norm(f"{o}.norm_cross", f"{t}/attention/layer_norm")
    model = Whisper(cfg)
    model.load_state_dict(sd)      # strict: a missing or extra tensor names itself
    return model.eval(), special_tokens(directory, vocab)


def special_tokens(directory: Path, n_vocab: int) -> SpecialTokens:
    """Control-token ids from tokenizer.json's added tokens and the suppress lists of config.json."""
    added = {t["content"]: t["id"] for t in json.loads((directory / "tokenizer.json").read_text())["added_tokens"]}
    conf = json.loads((directory / "config.json").read_text()) if (directory / "config.json").exists() else {}
    s = SpecialTokens(eot=added["<|endoftext|>"], sot=added["<|startoftranscript|>"],
                      no_timestamps=added["<|notimestamps|>"], timestamp_begin=added["<|notimestamps|>"] + 1,
                      suppress=list(conf.get("suppress_ids", [])),
                      suppress_begin=list(conf.get("suppress_ids_begin", [220, added["<|endoftext|>"]])))
    if n_vocab >= 51865:  # multilingual: <|en|> <|transcribe|> after <|startoftranscript|>
        s.prefix = [added["<|en|>"], added["<|transcribe|>"]]
    return s
