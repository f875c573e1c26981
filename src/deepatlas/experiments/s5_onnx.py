"""S5: our models leave PyTorch — ONNX in onnxruntime, int8, and a web page in headless Chromium.

Two models are trained here with the shared loop, exported (deploy/onnx.py) and run elsewhere:
  * a Fashion-MNIST classifier (MLP 784-256-10), on the test set;
  * a char GPT on Jane Austen, exported as one decoding step with the KV cache as explicit
    inputs/outputs, generating greedily from a prompt.
Each runs in onnxruntime (CPU, fp32), in onnxruntime int8-dynamic-quantised, and in a static page
on onnxruntime-web (WASM) that Debian's Chromium opens headless from a 127.0.0.1 server
(deploy/web.py); the page tokenizes the prompt itself, and a screenshot is kept (page.png).

Claim: onnxruntime and the browser compute what PyTorch computes — logits within atol, every
test-image prediction and every greedy token identical — and int8 makes both files ≤ 40% of
fp32 at a cost of ≤ 1 point of accuracy and ≤ 0.05 nats/char of validation loss.
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
from deepatlas.core.train import TrainConfig, train
from deepatlas.deploy import onnx as dx

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")


@dataclass
class Config:
    n_train: int = 60000
    n_test: int = 10000
    hidden: int = 256
    cls_train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=600, lr=2e-3, min_lr=1e-4, optimizer="adam", schedule="cosine", log_every=100,
        checkpoint_every=300))
    batch_size: int = 128
    corpus_chars: int = 400_000
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 96
    gpt_batch: int = 16
    gpt_train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=800, lr=2e-3, min_lr=2e-4, warmup=40, schedule="cosine", beta2=0.99, log_every=50,
        checkpoint_every=200))
    eval_batches: int = 10
    prompt: str = "Emma was"
    new_tokens: int = 80          # prompt + new tokens ≤ block_size (no sliding window in the graph)
    page_images: int = 12
    atol: float = 1e-4            # logits, onnxruntime and browser vs PyTorch
    int8_size_ratio: float = 0.40
    int8_acc_drop: float = 0.01
    int8_val_loss_rise: float = 0.05
    browser: bool = True
    seed: int = 0


def _train_classifier(cfg: Config, run: Run):
    from deepatlas.data.fashion_mnist import fashion_mnist_float, load_fashion_mnist
    from deepatlas.foundations.mlp import MLP

    x, y = fashion_mnist_float("train", flatten=True)
    x, y = x[:cfg.n_train], y[:cfg.n_train]
    xt, yt = fashion_mnist_float("test", flatten=True)
    pixels = load_fashion_mnist("test")[0][:cfg.page_images].reshape(cfg.page_images, -1)
    torch.manual_seed(cfg.seed)
    model = MLP([784, cfg.hidden, 10])

    def get_batch(step: int, micro: int):
        idx = torch.randint(0, len(x), (cfg.batch_size,),
                            generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
        return x[idx], y[idx]

    train(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), get_batch, cfg.cls_train, run=run,
          checkpoint_dir=run.checkpoint_dir / "classifier", resume=run.resuming)
    return model.eval(), xt[:cfg.n_test], yt[:cfg.n_test], pixels


def _train_gpt(cfg: Config, run: Run):
    from deepatlas.data.austen import austen_corpus
    from deepatlas.data.lm import char_lm_dataset
    from deepatlas.models.gpt import GPT, GPTConfig, lm_loss

    tok, data = char_lm_dataset(austen_corpus()[:cfg.corpus_chars])
    torch.manual_seed(cfg.seed)
    gpt = GPT(GPTConfig(vocab_size=len(tok), block_size=cfg.block_size, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=0.0))
    train(gpt, lm_loss, data.batch_fn("train", cfg.gpt_batch, cfg.block_size, cfg.seed), cfg.gpt_train,
          run=run, checkpoint_dir=run.checkpoint_dir / "gpt", resume=run.resuming)
    val = [data.get_batch("val", i, 0, cfg.gpt_batch, cfg.block_size, seed=10_000 + cfg.seed)
           for i in range(cfg.eval_batches)]
    return gpt.eval(), tok, val


def _ort_val_loss(sess, val, gpt) -> float:
    c = gpt.config
    losses = []
    for x, y in val:
        empty = np.zeros((c.n_layer, len(x), c.n_head, 0, c.n_embd // c.n_head), np.float32)
        logits = sess.run(["logits"], {"ids": x.numpy(), "past_k": empty, "past_v": empty})[0]
        losses.append(F.cross_entropy(torch.from_numpy(logits).flatten(0, 1), y.flatten()).item())
    return float(np.mean(losses))


def _size_kb(path: Path) -> float:
    return path.stat().st_size / 1024


@experiment("S5", "onnx-browser",
            claim="exported to ONNX, a Fashion-MNIST classifier and our GPT (KV cache as explicit "
                  "inputs/outputs) give PyTorch's logits (atol 1e-4), predictions and greedy text in "
                  "onnxruntime and in a web page on onnxruntime-web in headless Chromium; int8 dynamic "
                  "quantisation makes the files ≤ 40% of fp32 for ≤ 1 point of accuracy and ≤ 0.05 "
                  "nats/char",
            config=Config, one_thread=True,
            quick={"n_train": 5000, "n_test": 2000, "hidden": 128, "cls_train.steps": 150,
                   "cls_train.checkpoint_every": 0, "corpus_chars": 200_000, "n_layer": 2, "n_embd": 64,
                   "block_size": 64, "gpt_train.steps": 150, "gpt_train.lr": 3e-3, "gpt_train.warmup": 10,
                   "gpt_train.checkpoint_every": 0, "eval_batches": 4, "new_tokens": 40, "page_images": 8},
            headline={"gpt_onnx_max_logit_diff": ("GPT logits, onnxruntime vs PyTorch", "{:.1e}"),
                      "browser_greedy_identical": ("greedy text identical in Chromium", "{}"),
                      "gpt_int8_size_ratio": ("int8 GPT file / fp32", "{:.0%}"),
                      "cls_int8_acc_drop": ("int8 accuracy cost", "{:+.2%}")})
def onnx_browser(cfg: Config, run: Run) -> Verdict:
    from deepatlas.deploy.web import find_onnxruntime_web, run_in_chromium, write_site

    m: dict = {}
    clf, xt, yt, pixels = _train_classifier(cfg, run)
    gpt, tok, val = _train_gpt(cfg, run)
    c = gpt.config
    shape = dict(n_layer=c.n_layer, n_head=c.n_head, head_dim=c.n_embd // c.n_head)
    prompt = tok.encode(cfg.prompt)
    if len(prompt) + cfg.new_tokens > c.block_size:
        raise ValueError(f"prompt ({len(prompt)}) + new_tokens ({cfg.new_tokens}) exceed block_size {c.block_size}")
    with tempfile.TemporaryDirectory(prefix="deepatlas-s5-") as tmp:
        tmp = Path(tmp)
        # ---- the classifier: PyTorch, onnxruntime fp32, onnxruntime int8
        cls_path = dx.export_classifier(clf, xt[:1], tmp / "classifier.onnx")
        cls_q = dx.quantize_int8(cls_path, tmp / "classifier.int8.onnx")
        with torch.no_grad():
            ref = clf(xt).numpy()
        ort_logits = dx.classify(dx.session(cls_path), xt.numpy())
        q_logits = dx.classify(dx.session(cls_q), xt.numpy())
        acc = lambda logits: float((logits.argmax(1) == yt.numpy()).mean())  # noqa: E731
        m.update(cls_acc_torch=acc(ref), cls_acc_onnx=acc(ort_logits), cls_acc_int8=acc(q_logits),
                 cls_onnx_max_logit_diff=float(np.abs(ort_logits - ref).max()),
                 cls_onnx_predictions_identical=bool((ort_logits.argmax(1) == ref.argmax(1)).all()),
                 cls_size_kb=_size_kb(cls_path), cls_int8_size_kb=_size_kb(cls_q))
        m["cls_int8_acc_drop"] = m["cls_acc_torch"] - m["cls_acc_int8"]
        m["cls_int8_size_ratio"] = m["cls_int8_size_kb"] / m["cls_size_kb"]

        # ---- the GPT: greedy text and validation loss
        gpt_path = dx.export_gpt(gpt, tmp / "gpt.onnx")
        gpt_q = dx.quantize_int8(gpt_path, tmp / "gpt.int8.onnx")
        sess, sess_q = dx.session(gpt_path), dx.session(gpt_q)
        t0 = time.perf_counter()
        want, want_logits = dx.greedy_torch(gpt, prompt, cfg.new_tokens)
        m["torch_tokens_per_s"] = cfg.new_tokens / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        got, got_logits = dx.greedy_onnx(sess, prompt, cfg.new_tokens, **shape)
        m["onnx_tokens_per_s"] = cfg.new_tokens / (time.perf_counter() - t0)
        got_q, _ = dx.greedy_onnx(sess_q, prompt, cfg.new_tokens, **shape)
        with torch.no_grad():
            val_torch = float(np.mean([F.cross_entropy(gpt(x).flatten(0, 1), y.flatten()).item() for x, y in val]))
        m.update(gpt_onnx_max_logit_diff=max(float(np.abs(a - b).max()) for a, b in zip(got_logits, want_logits)),
                 gpt_onnx_greedy_identical=got == want,
                 gpt_int8_greedy_agree_tokens=next((i for i, (a, b) in enumerate(zip(got_q, want)) if a != b),
                                                   cfg.new_tokens),
                 gpt_val_loss_torch=val_torch, gpt_val_loss_onnx=_ort_val_loss(sess, val, gpt),
                 gpt_val_loss_int8=_ort_val_loss(sess_q, val, gpt),
                 gpt_size_kb=_size_kb(gpt_path), gpt_int8_size_kb=_size_kb(gpt_q))
        m["gpt_int8_val_loss_rise"] = m["gpt_val_loss_int8"] - m["gpt_val_loss_torch"]
        m["gpt_int8_size_ratio"] = m["gpt_int8_size_kb"] / m["gpt_size_kb"]
        text = cfg.prompt + tok.decode(want)
        (run.dir / "greedy.txt").write_text(f"PyTorch / onnxruntime / browser:\n{text}\n\nint8:\n"
                                            f"{cfg.prompt + tok.decode(got_q)}\n")
        run.print(f"greedy: {text!r}")

        # ---- the page in headless Chromium
        m["browser_ran"] = False
        notes_browser = ""
        if cfg.browser and find_onnxruntime_web() is None:
            notes_browser = ("onnxruntime-web not found (python -c 'from deepatlas.deploy.web import "
                             "fetch_onnxruntime_web as f; f()' once): the browser part did not run. ")
        elif cfg.browser:
            n = cfg.page_images
            site = write_site(tmp / "site", classifier={"model": cls_path, "x": xt[:n].numpy(), "pixels": pixels,
                                                        "labels": yt[:n].tolist(), "classes": CLASSES},
                              gpt={"model": gpt_path, "vocab": tok.chars, "prompt": cfg.prompt,
                                   "new_tokens": cfg.new_tokens, **shape})
            page = run_in_chromium(site, screenshot=run.dir / "page.png")
            run.plots.append("page.png")
            gen, cls = page["generation"], page["classifier"]
            m.update(browser_ran=True, browser_console_errors=len(page["console_errors"]),
                     browser_prompt_ids_equal=gen["prompt_ids"] == prompt,
                     browser_greedy_identical=gen["tokens"] == want,
                     browser_gpt_max_logit_diff=max(float(np.abs(np.array(a) - b).max())
                                                    for a, b in zip(gen["logits"], want_logits)),
                     browser_cls_max_logit_diff=float(np.abs(np.array(cls["logits"]).reshape(n, 10) - ref[:n]).max()),
                     browser_predictions_identical=cls["predictions"] == ref[:n].argmax(1).tolist(),
                     browser_tokens_per_s=gen["tokens_per_s"])
    m.setdefault("browser_greedy_identical", False)

    onnx_ok = (m["cls_onnx_max_logit_diff"] <= cfg.atol and m["gpt_onnx_max_logit_diff"] <= cfg.atol
               and m["cls_onnx_predictions_identical"] and m["gpt_onnx_greedy_identical"])
    browser_ok = m["browser_ran"] and m["browser_prompt_ids_equal"] and m["browser_greedy_identical"] and \
        m["browser_predictions_identical"] and m["browser_console_errors"] == 0 and \
        max(m["browser_gpt_max_logit_diff"], m["browser_cls_max_logit_diff"]) <= cfg.atol
    int8_ok = (max(m["cls_int8_size_ratio"], m["gpt_int8_size_ratio"]) <= cfg.int8_size_ratio
               and m["cls_int8_acc_drop"] <= cfg.int8_acc_drop and m["gpt_int8_val_loss_rise"] <= cfg.int8_val_loss_rise)
    m.update(onnx_parity_held=onnx_ok, browser_parity_held=bool(browser_ok), int8_held=int8_ok)
    notes = (f"{notes_browser}classifier {m['cls_acc_torch']:.1%} in PyTorch, {m['cls_acc_onnx']:.1%} onnxruntime, "
             f"{m['cls_acc_int8']:.1%} int8 ({m['cls_int8_size_ratio']:.0%} of the file); GPT val loss "
             f"{m['gpt_val_loss_torch']:.3f} -> {m['gpt_val_loss_int8']:.3f} nats/char int8 "
             f"({m['gpt_int8_size_ratio']:.0%} of the file), int8 greedy text equal for "
             f"{m['gpt_int8_greedy_agree_tokens']} of {cfg.new_tokens} tokens; tokens/s PyTorch "
             f"{m['torch_tokens_per_s']:.0f}, onnxruntime {m['onnx_tokens_per_s']:.0f}"
             + (f", browser {m['browser_tokens_per_s']:.0f}" if m["browser_ran"] else "") + " (onnxruntime and the page: one thread)")
    return Verdict(held=bool(onnx_ok and browser_ok and int8_ok), metrics=m, notes=notes)
