"""L7: training precision against loss — fp32, bf16, fp16 with and without loss scaling, FP8.

One small GPT (deepatlas.models.gpt) trained on Jane Austen's characters: `shared_steps` in fp32
past the unigram plateau, then `steps` more in each precision from that same model and optimizer
state, on the same batches:
    fp32           plain.
    bf16           torch.autocast("cpu", bfloat16): matmuls in bf16, fp32 master weights.
    fp16           torch.autocast("cpu", float16): matmuls in fp16 on the CPU (real fp16 rounding
                   and range, CPU kernels), no loss scaling.
    fp16+scaling   the same with deepatlas.quant.fp8.DynamicLossScaler (S = 2^16 at the start).
    fp8-tensor / fp8-tile   every Linear an FP8Linear: e4m3 inputs and weights, e5m2 output
                   gradients, one scale per tensor or DeepSeek-V3's 1×128 / 128×128 tiles —
                   SIMULATED: real FP8 rounding (torch float8 casts), fp32 matmuls.
(core.train refuses fp16 on a CPU on purpose; this study needs its own step to show the scaler.)
Measured: val loss of each; in fp16 without scaling, the share of logit-gradient entries that
underflow (|g| below fp16's smallest subnormal 2⁻²⁴ ≈ 6e-8, computed from the fp32 gradient) and
the share of weight-gradient entries that came out exactly zero, against fp16+scaling; FP8 matmul
error on activations with outlier tokens (per-tensor vs tile scales) against the outlier size.
Held: bf16, fp16+scaling and fp8-tile within loss_tolerance of fp32; fp16 without scaling loses
gradient entries (more zero weight-gradient entries than with scaling); tile scales beat one
scale per tensor on outlier activations.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import lr_at, TrainConfig
from deepatlas.data.lm import char_lm_dataset
from deepatlas.models.gpt import GPT, GPTConfig, lm_loss
from deepatlas.quant.fp8 import DynamicLossScaler, fp8_matmul_error, to_fp8_linears

PRECISIONS = ("fp32", "bf16", "fp16", "fp16+scaling", "fp8-tensor", "fp8-tile")
FP16_TINY = 2.0 ** -24          # smallest fp16 subnormal


@dataclass
class Config:
    corpus_chars: int = 400_000
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 16
    shared_steps: int = 300           # fp32 steps every precision starts from
    steps: int = 400                  # steps in each precision after them
    lr: float = 2e-3
    warmup: int = 20
    eval_batches: int = 8
    fp8_tile: int = 128
    loss_tolerance: float = 0.05      # nats/char from fp32
    outliers: tuple[float, ...] = (1.0, 1e1, 1e2, 1e3, 1e4, 1e5)
    seed: int = 0


def _autocast(precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp16+scaling": torch.float16}.get(precision)
    return torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()


def new_model(cfg: Config, vocab: int) -> GPT:
    torch.manual_seed(cfg.seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=cfg.block_size, n_layer=cfg.n_layer,
                         n_head=cfg.n_head, n_embd=cfg.n_embd))


def train_precision(cfg: Config, data, vocab: int, precision: str, run: Run | None,
                    start: dict | None = None, first_step: int = 0, steps: int | None = None) -> dict:
    """Train in `precision` for `steps` from `start` (model + optimizer state at first_step)."""
    model = new_model(cfg, vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    if start is not None:
        model.load_state_dict(start["model"])
        opt.load_state_dict(start["optimizer"])
    if precision.startswith("fp8"):
        to_fp8_linears(model, precision.split("-")[1], cfg.fp8_tile)
    schedule = TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=cfg.warmup, schedule="constant")
    scaler = DynamicLossScaler(enabled=precision == "fp16+scaling")
    zero_share, losses = [], []
    for step in range(first_step, first_step + (cfg.steps if steps is None else steps)):
        for group in opt.param_groups:
            group["lr"] = lr_at(schedule, step)
        x, y = data.get_batch("train", step, 0, cfg.batch_size, cfg.block_size, seed=cfg.seed)
        with _autocast(precision):
            loss = lm_loss(model, (x, y))
        (loss.float() * scaler.scale).backward()
        finite = scaler.unscale_and_check(model.parameters())
        if step < first_step + 20:   # weight-gradient entries that came out exactly 0 (fp32: essentially none)
            grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None and p.dim() >= 2])
            zero_share.append(float((grads == 0).float().mean()))
        if finite:
            opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    if run is None:   # the shared fp32 start
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "losses": losses}
    model.eval()
    with torch.no_grad(), _autocast(precision):
        val = float(np.mean([float(lm_loss(model, data.get_batch("val", i, 0, cfg.batch_size, cfg.block_size,
                                                                   seed=10_000))) for i in range(cfg.eval_batches)]))
    row = {"precision": precision, "val_loss": val, "zero_weight_grad_share": float(np.mean(zero_share)),
           "skipped_steps": scaler.skipped, "final_scale": scaler.scale}
    run.log(**row)
    run.print(f"{precision:13s} val {val:.4f}  zero weight-grad entries {row['zero_weight_grad_share']:.2%}"
              f"  skipped {scaler.skipped}")
    return {**row, "losses": losses}


def logit_grad_underflow(cfg: Config, data, vocab: int, start: dict) -> float:
    """Share of dL/dlogits entries (fp32, of the shared start) below fp16's smallest subnormal."""
    model = new_model(cfg, vocab)
    model.load_state_dict(start["model"])
    x, y = data.get_batch("train", 0, 0, cfg.batch_size, cfg.block_size, seed=cfg.seed)
    logits = model(x).detach().requires_grad_(True)
    F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    return float((logits.grad.abs() < FP16_TINY / 2).float().mean())   # rounds to 0 in fp16


def outlier_errors(cfg: Config) -> list[dict]:
    """FP8 (e4m3) matmul error, per token, with four outlier tokens of growing size."""
    g = torch.Generator().manual_seed(cfg.seed)
    x0, w = torch.randn(64, 512, generator=g), torch.randn(256, 512, generator=g) * 0.05
    rows = []
    for size in cfg.outliers:
        x = x0.clone()
        x[:4] *= size
        rows.append({"outlier": size, "tensor": fp8_matmul_error(x, w, "tensor", tile=cfg.fp8_tile),
                     "tile": fp8_matmul_error(x, w, "tile", tile=cfg.fp8_tile)})
    return rows


@experiment("L7", "precision",
            claim="bf16, fp16 with dynamic loss scaling and simulated FP8 with tile-wise scales train a "
                  "small GPT to within 0.05 nats of fp32; fp16 without loss scaling loses gradient "
                  "entries to underflow; tile-wise FP8 scales beat one scale per tensor when "
                  "activations have outliers",
            config=Config, one_thread=True,
            quick={"corpus_chars": 100_000, "n_embd": 64, "block_size": 32, "batch_size": 8, "shared_steps": 150, "steps": 30,
                   "warmup": 5, "eval_batches": 4, "outliers": "1,1e3,1e5"},
            headline={"fp8_tile_minus_fp32": ("FP8 tile − fp32 val loss", "{:+.3f}"),
                      "fp16_minus_fp32": ("fp16 unscaled − fp32", "{:+.3f}"),
                      "fp16_zero_grad_share": ("fp16 unscaled: zero weight-grad entries", "{:.1%}"),
                      "logit_grad_underflow_share": ("dL/dlogits below fp16 range", "{:.1%}")})
def precision(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from deepatlas.data.austen import austen_corpus

    tok, data = char_lm_dataset(austen_corpus()[:cfg.corpus_chars])
    # one fp32 run past the unigram plateau, then every precision continues from it: a plateau
    # escape a few steps earlier or later would otherwise swamp the precision differences
    start = train_precision(cfg, data, len(tok), "fp32", None, steps=cfg.shared_steps)
    rows = {p: train_precision(cfg, data, len(tok), p, run, start, cfg.shared_steps) for p in PRECISIONS}
    underflow = logit_grad_underflow(cfg, data, len(tok), start)
    outliers = outlier_errors(cfg)
    base = rows["fp32"]["val_loss"]
    metrics = {f"val_loss_{p.replace('+', '_').replace('-', '_')}": round(r["val_loss"], 4) for p, r in rows.items()}
    for p in PRECISIONS[1:]:
        metrics[f"{p.replace('+', '_').replace('-', '_')}_minus_fp32"] = round(rows[p]["val_loss"] - base, 4)
    metrics.update(
        fp16_zero_grad_share=round(rows["fp16"]["zero_weight_grad_share"], 5),
        fp16_scaled_zero_grad_share=round(rows["fp16+scaling"]["zero_weight_grad_share"], 5),
        fp32_zero_grad_share=round(rows["fp32"]["zero_weight_grad_share"], 5),
        fp16_scaling_skipped_steps=rows["fp16+scaling"]["skipped_steps"],
        fp16_final_scale=rows["fp16+scaling"]["final_scale"],
        logit_grad_underflow_share=round(underflow, 4),
        fp8_outlier_errors=[{k: float(f"{v:.4g}") for k, v in r.items()} for r in outliers],
        steps=cfg.steps, shared_fp32_steps=cfg.shared_steps)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    k = max(1, cfg.steps // 40)
    for p, r in rows.items():
        sm = np.convolve(r["losses"], np.ones(k) / k, mode="valid")
        axes[0].plot(sm, label=f"{p} (val {r['val_loss']:.3f})", lw=1)
    axes[0].set(xlabel="step", ylabel="train loss (nats/char)", title="precision vs loss")
    axes[0].legend(fontsize=7)
    sizes = [r["outlier"] for r in outliers]
    axes[1].loglog(sizes, [r["tensor"] for r in outliers], "s-", label="one scale per tensor")
    axes[1].loglog(sizes, [r["tile"] for r in outliers], "o-", label="1×128 / 128×128 tiles")
    axes[1].set(xlabel="outlier token magnitude (×)", ylabel="FP8 e4m3 matmul error (per token)",
                title="FP8 scaling granularity")
    axes[1].legend()
    fig.tight_layout()
    run.savefig(fig, "precision")

    close = all(abs(metrics[f"{p}_minus_fp32"]) <= cfg.loss_tolerance for p in ("bf16", "fp16_scaling", "fp8_tile"))
    lost = metrics["fp16_zero_grad_share"] > metrics["fp16_scaled_zero_grad_share"]
    tiles = outliers[-1]["tile"] < outliers[-1]["tensor"]
    held = close and lost and tiles
    notes = (f"val − fp32: bf16 {metrics['bf16_minus_fp32']:+.3f}, fp16 {metrics['fp16_minus_fp32']:+.3f}, "
             f"fp16+scaling {metrics['fp16_scaling_minus_fp32']:+.3f}, fp8 per-tensor "
             f"{metrics['fp8_tensor_minus_fp32']:+.3f}, fp8 tile {metrics['fp8_tile_minus_fp32']:+.3f}; "
             f"zero weight-grad entries fp16 {metrics['fp16_zero_grad_share']:.2%} vs scaled "
             f"{metrics['fp16_scaled_zero_grad_share']:.2%}; {underflow:.1%} of dL/dlogits below fp16's range; "
             f"FP8 error at {sizes[-1]:g}× outliers: tensor {outliers[-1]['tensor']:.3f}, tile {outliers[-1]['tile']:.3f}")
    return Verdict(held=held, metrics=metrics, notes=notes)
