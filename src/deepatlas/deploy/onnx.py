"""ONNX export of our models and inference in onnxruntime (place S5).

ONNX is a graph of standard operators (MatMul, Softmax, LayerNormalization, …) that runtimes
other than PyTorch execute: onnxruntime in Python, C++, mobile and — as WebAssembly — in a web
page (deploy/web.py). Exporter: torch.onnx.export(..., dynamo=False), the TorchScript tracer:
it records the operators one example input runs and keeps the batch and sequence lengths
symbolic (dynamic_axes). (The torch.export-based dynamo exporter also handles these models; the
tracer is used because it accepts a KV cache of length 0, the first step of generation.)

A KV cache as explicit inputs and outputs: an ONNX graph holds no state, so the decoding step is

    logits, present_k, present_v = gpt(ids, past_k, past_v)
    ids (B, T) · past_k, past_v (L, B, H, P, hd) · logits (B, T, V) · present_* (L, B, H, P+T, hd)

with keys/values of each layer  K = [K_past ; K_new]  (concatenated along positions), positions
P..P+T-1, and the causal mask  keep[i, j] = (j ≤ P + i)  computed in the graph from P and T, so
the one graph serves the prompt (P = 0, T = prompt) and every next token (T = 1).

int8 dynamic quantisation (onnxruntime.quantization.quantize_dynamic): weights of MatMul/Gemm
are stored as int8 with one scale per tensor, w ≈ s·q, q = round(w/s) ∈ [-127, 127], s = max|w|/127;
activations are quantised on the fly per call (hence "dynamic"), so no calibration data is needed.
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


class GPTWithPast(nn.Module):
    """Our GPT as a pure function of (ids, past_k, past_v) -> (logits, present_k, present_v)."""

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt.eval()

    def forward(self, ids: Tensor, past_k: Tensor, past_v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        gpt = self.gpt
        T, P = ids.shape[1], past_k.shape[3]
        q_pos = torch.arange(T, device=ids.device) + P                   # (T,)  positions P..P+T-1
        # keep[i, j] = (j ≤ P + i): query i sees the past and the new keys up to itself   (T, S)
        keep = torch.arange(P + T, device=ids.device)[None, :] <= q_pos[:, None]
        cache = _ConcatCache(past_k, past_v)
        # h_0 = W_e[x] + W_p[pos]                                          (B, T, d)
        x = gpt.wte(ids) + F.embedding(q_pos, gpt.wpe.weight)[None]
        for i, block in enumerate(gpt.blocks):
            # fast=False: the plain softmax(QKᵀ/√d)V path; tracing the fused one fails (its
            # enable_gqa flag is computed from shapes, which the tracer turns into tensors)
            x = block(x, mask=keep, causal=False, cache=cache, layer=i, pos=P, fast=False)
        logits = gpt.lm_head(gpt.ln_f(x))                                 # (B, T, V)
        return logits, torch.stack(cache.present_k), torch.stack(cache.present_v)

    def empty_past(self, batch: int = 1) -> tuple[Tensor, Tensor]:
        c = self.gpt.config
        shape = (c.n_layer, batch, c.n_head, 0, c.n_embd // c.n_head)
        return torch.zeros(shape), torch.zeros(shape)


@contextlib.contextmanager
def _quiet_tracer():
    """The tracer warns at every Python-level use of a shape (it records the value it saw); those
    uses here are sizes the graph recomputes (dynamic_axes), checked by tests/deploy/test_onnx.py."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*dynamo=False.*|.*TorchScript-based.*|The feature will be removed.*")
        yield


def export_gpt(gpt: GPT, path: str | Path, opset: int = 17) -> Path:
    """Write `gpt` as an ONNX decoding step with the KV cache as inputs/outputs (see above)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = GPTWithPast(gpt)
    c = gpt.config
    ids = torch.zeros(1, 3, dtype=torch.long)
    past = torch.zeros(c.n_layer, 1, c.n_head, 2, c.n_embd // c.n_head)
    axes = {"ids": {0: "batch", 1: "new"}, "logits": {0: "batch", 1: "new"},
            "past_k": {1: "batch", 3: "past"}, "past_v": {1: "batch", 3: "past"},
            "present_k": {1: "batch", 3: "total"}, "present_v": {1: "batch", 3: "total"}}
    with torch.no_grad(), _quiet_tracer():
        torch.onnx.export(step, (ids, past, past.clone()), str(path), dynamo=False, opset_version=opset,
                          input_names=["ids", "past_k", "past_v"],
                          output_names=["logits", "present_k", "present_v"], dynamic_axes=axes)
    return path


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
def greedy_torch(gpt: GPT, prompt: Sequence[int], new_tokens: int) -> tuple[list[int], list[np.ndarray]]:
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


def quantize_int8(path: str | Path, out: str | Path) -> Path:
    """int8 dynamic quantisation of the weights of an ONNX file (onnxruntime.quantization)."""
    _onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)   # its "consider pre-processing" hint, every call
    try:
        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().setLevel(quiet)
    return Path(out)
