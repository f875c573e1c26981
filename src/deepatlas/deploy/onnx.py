"""ONNX export of our models and inference in onnxruntime (place S5).

ONNX is a graph of standard operators (MatMul, Softmax, LayerNormalization, …) that runtimes
other than PyTorch execute: onnxruntime in Python, C++, mobile and — as WebAssembly — in a web
page (deploy/web.py). Exporter: torch.onnx.export(..., dynamo=False), the TorchScript tracer:
it records the operators one example input runs and keeps the batch and sequence lengths
symbolic (dynamic_axes). Why not the torch.export-based dynamo exporter: it needs the
`onnxscript` package, which this project does not depend on (`onnx` is enough for the tracer),
and the tracer's graph accepts a KV cache of length 0, the first step of generation, as the
tests check; the dynamo route was not tried here. The same step serves our GPT
and our Llama / SmolLM2 (RoPE, grouped-query attention); RMSNorm is traced as its formula, since
aten::rms_norm has no ONNX op below opset 23. A tied output head is stored twice in the file —
the embedding table for Gather and its transpose, folded into a constant for the head's MatMul
(+108 MB for SmolLM2: 624 MB instead of 516); int8 quantises both copies.

A KV cache as explicit inputs and outputs: an ONNX graph holds no state, so the decoding step is

    logits, present_k, present_v = gpt(ids, past_k, past_v)
    ids (B, T) · past_k, past_v (L, B, H, P, hd) · logits (B, T, V) · present_* (L, B, H, P+T, hd)

with keys/values of each layer  K = [K_past ; K_new]  (concatenated along positions), positions
P..P+T-1, and the causal mask  keep[i, j] = (j ≤ P + i)  computed in the graph from P and T, so
the one graph serves the prompt (P = 0, T = prompt) and every next token (T = 1).

int8 dynamic quantisation (onnxruntime.quantization.quantize_dynamic): weights of MatMul (and
an embedding's Gather) are stored as int8 with one scale per tensor, w ≈ s·q, q = round(w/s) ∈
[-127, 127], s = max|w|/127; activations are quantised on the fly per call (hence "dynamic"; uint8,
one scale per tensor), so no calibration data is needed — and an activation with a few outlier
features loses the rest of its resolution (SmolLM2: +0.75 nats/token, experiments/s5_smollm2_web.py).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.gpt import GPT
from deepatlas.models.llama import Llama
from deepatlas.nn.norms import RMSNorm


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - the reference extra
        raise ImportError("onnxruntime is not installed: pip install 'deepatlas[reference]' "
                          "(or pip install onnx onnxruntime)") from e
    return onnxruntime


class _ConcatCache:
    """The KVCache interface of nn.attention over explicit tensors: update() returns
    [past ; new] along positions and keeps it as this layer's present keys/values."""

    def __init__(self, past_k: Tensor, past_v: Tensor) -> None:
        self.past_k, self.past_v = past_k, past_v                        # (L, B, H, P, hd)
        self.present_k: list[Tensor] = []
        self.present_v: list[Tensor] = []

    def update(self, layer: int, k: Tensor, v: Tensor, pos) -> tuple[Tensor, Tensor]:
        k = torch.cat([self.past_k[layer], k], dim=2)                    # (B, H, P+T, hd)
        v = torch.cat([self.past_v[layer], v], dim=2)
        self.present_k.append(k)
        self.present_v.append(v)
        return k, v


class _DecoderWithPast(nn.Module):
    """A decoder as a pure function (ids, past_k, past_v) -> (logits, present_k, present_v).
    Subclasses say how tokens enter (embed) and leave (head); the blocks, cache and mask are shared."""

    def __init__(self, model: nn.Module, n_layer: int, n_kv_head: int, head_dim: int) -> None:
        super().__init__()
        self.model = model.eval()
        self.past_shape = (n_layer, n_kv_head, head_dim)

    def embed(self, ids: Tensor, q_pos: Tensor, P: int) -> tuple[Tensor, int | Tensor]:
        """-> h_0 (B, T, d) and the `pos` the blocks take."""
        raise NotImplementedError

    def head(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, ids: Tensor, past_k: Tensor, past_v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        T, P = ids.shape[1], past_k.shape[3]
        q_pos = torch.arange(T, device=ids.device) + P                   # (T,)  positions P..P+T-1
        # keep[i, j] = (j ≤ P + i): query i sees the past and the new keys up to itself   (T, S)
        keep = torch.arange(P + T, device=ids.device)[None, :] <= q_pos[:, None]
        cache = _ConcatCache(past_k, past_v)
        x, pos = self.embed(ids, q_pos, P)                                 # (B, T, d)
        for i, block in enumerate(self.model.blocks):
            # fast=False: the plain softmax(QKᵀ/√d)V path; tracing the fused one fails (its
            # enable_gqa flag is computed from shapes, which the tracer turns into tensors)
            x = block(x, mask=keep, causal=False, cache=cache, layer=i, pos=pos, fast=False)
        return self.head(x), torch.stack(cache.present_k), torch.stack(cache.present_v)  # (B, T, V), ...

    def empty_past(self, batch: int = 1) -> tuple[Tensor, Tensor]:
        L, H, hd = self.past_shape
        return torch.zeros(L, batch, H, 0, hd), torch.zeros(L, batch, H, 0, hd)


class GPTWithPast(_DecoderWithPast):
    """Our GPT: learned positions, h_0 = W_e[x] + W_p[pos]; cache (L, B, n_head, P, hd)."""

    def __init__(self, gpt: GPT) -> None:
        c = gpt.config
        super().__init__(gpt, c.n_layer, c.n_head, c.n_embd // c.n_head)

    def embed(self, ids: Tensor, q_pos: Tensor, P: int) -> tuple[Tensor, int]:
        gpt = self.model
        # h_0 = W_e[x] + W_p[pos]                                          (B, T, d)
        return gpt.wte(ids) + F.embedding(q_pos, gpt.wpe.weight)[None], P

    def head(self, x: Tensor) -> Tensor:
        return self.model.lm_head(self.model.ln_f(x))


class LlamaWithPast(_DecoderWithPast):
    """Our Llama / SmolLM2: no position table — RoPE rotates q, k at positions P..P+T-1 (the
    rotary cos/sin table is a constant of the graph, so positions stop at its length, 4096 for
    SmolLM2); grouped-query attention keeps only n_kv_head heads in the cache (L, B, n_kv, P, hd)."""

    def __init__(self, llama: Llama) -> None:
        c = llama.config
        super().__init__(llama, c.n_layer, c.n_kv_head, c.head_dim)

    def embed(self, ids: Tensor, q_pos: Tensor, P: int) -> tuple[Tensor, Tensor]:
        return self.model.embed(ids), q_pos[None]                          # (B, T, d), (1, T)

    def head(self, x: Tensor) -> Tensor:
        return self.model.lm_head(self.model.norm(x))


def with_past(model: nn.Module) -> _DecoderWithPast:
    """The (ids, past) -> (logits, present) function of our GPT or Llama."""
    if isinstance(model, GPT):
        return GPTWithPast(model)
    if isinstance(model, Llama):
        return LlamaWithPast(model)
    raise TypeError(f"no ONNX decoding step for {type(model).__name__}; valid: GPT, Llama")


def past_shape(model: nn.Module) -> dict[str, int]:
    """n_layer, n_head (the cached key/value heads) and head_dim, as greedy_onnx takes them."""
    L, H, hd = with_past(model).past_shape
    return {"n_layer": L, "n_head": H, "head_dim": hd}


@contextlib.contextmanager
def _quiet_tracer():
    """The tracer warns at every Python-level use of a shape (it records the value it saw); those
    uses here are sizes the graph recomputes (dynamic_axes), checked by tests/deploy/test_onnx.py."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*dynamo=False.*|.*TorchScript-based.*|The feature will be removed.*")
        yield


@contextlib.contextmanager
def _plain_rms_norms(model: nn.Module):
    """RMSNorm's formula instead of F.rms_norm while exporting: the tracer has no ONNX op for
    aten::rms_norm below opset 23 (RMSNormalization), which onnxruntime-web 1.30 lacks."""
    norms = [m for m in model.modules() if isinstance(m, RMSNorm) and m.fast]
    for m in norms:
        m.fast = False
    try:
        yield
    finally:
        for m in norms:
            m.fast = True


def export_decoder(model: GPT | Llama, path: str | Path, opset: int = 17) -> Path:
    """Write our GPT or Llama as an ONNX decoding step with the KV cache as inputs/outputs (above)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = with_past(model)
    L, H, hd = step.past_shape
    ids = torch.zeros(1, 3, dtype=torch.long)
    past = torch.zeros(L, 1, H, 2, hd)
    axes = {"ids": {0: "batch", 1: "new"}, "logits": {0: "batch", 1: "new"},
            "past_k": {1: "batch", 3: "past"}, "past_v": {1: "batch", 3: "past"},
            "present_k": {1: "batch", 3: "total"}, "present_v": {1: "batch", 3: "total"}}
    with torch.no_grad(), _quiet_tracer(), _plain_rms_norms(model):
        torch.onnx.export(step, (ids, past, past.clone()), str(path), dynamo=False, opset_version=opset,
                          input_names=["ids", "past_k", "past_v"],
                          output_names=["logits", "present_k", "present_v"], dynamic_axes=axes)
    return path


export_gpt = export_decoder   # the name S5's char-GPT part calls it by


def export_classifier(model: nn.Module, example: Tensor, path: str | Path, opset: int = 17) -> Path:
    """Write an image/feature classifier x (N, ...) -> logits (N, classes) with a dynamic batch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), _quiet_tracer():
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    return path


def session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU InferenceSession of the file (sequential, `threads` intra-op threads)."""
    ort = _onnxruntime()
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file (export it first: export_gpt / export_classifier)")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def classify(sess, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Logits (N, classes) of float32 inputs x (N, ...) from an exported classifier."""
    return np.concatenate([sess.run(["logits"], {"x": x[i:i + batch].astype(np.float32)})[0]
                           for i in range(0, len(x), batch)])


def greedy_onnx(sess, prompt: Sequence[int], new_tokens: int, n_layer: int, n_head: int,
                head_dim: int) -> tuple[list[int], list[np.ndarray]]:
    """Greedy decoding in onnxruntime with the explicit cache: the prompt in one call (P = 0),
    then one token per call. Returns the new tokens and each call's last-position logits."""
    past = np.zeros((n_layer, 1, n_head, 0, head_dim), np.float32)
    past_k, past_v, ids = past, past.copy(), np.asarray([list(prompt)], np.int64)
    tokens, logits_seen = [], []
    for _ in range(new_tokens):
        logits, past_k, past_v = sess.run(None, {"ids": ids, "past_k": past_k, "past_v": past_v})
        last = logits[0, -1]
        logits_seen.append(last)
        tokens.append(int(last.argmax()))
        ids = np.asarray([[tokens[-1]]], np.int64)
    return tokens, logits_seen


@torch.no_grad()
def greedy_torch(gpt: GPT | Llama, prompt: Sequence[int], new_tokens: int) -> tuple[list[int], list[np.ndarray]]:
    """The same greedy decoding in PyTorch through the model's own KVCache (the reference)."""
    gpt.eval()
    cache = gpt.new_cache(1, len(prompt) + new_tokens)
    ids = torch.tensor([list(prompt)])
    tokens, logits_seen = [], []
    for _ in range(new_tokens):
        last = gpt(ids, cache=cache)[0, -1]
        logits_seen.append(last.numpy())
        tokens.append(int(last.argmax()))
        ids = torch.tensor([[tokens[-1]]])
    return tokens, logits_seen


def quantize_int8(path: str | Path, out: str | Path, per_channel: bool = False) -> Path:
    """int8 dynamic quantisation of the weights of an ONNX file (onnxruntime.quantization).
    per_channel: one scale per output column of each MatMul weight, s_j = max_i |w_ij| / 127,
    instead of one per tensor (a column with small weights keeps its resolution)."""
    _onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)   # its "consider pre-processing" hint, every call
    try:
        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, per_channel=per_channel)
    finally:
        logging.getLogger().setLevel(quiet)
    return Path(out)
