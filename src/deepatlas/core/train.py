"""The training loop every experiment shares.

    result = train(model, loss_fn, get_batch, TrainConfig(steps=500, lr=3e-4), run=run)

One update ("step") = `grad_accum` micro-batches: loss_fn(model, get_batch(step, micro)) / grad_accum
is backpropagated for each, the gradients are clipped, the learning rate is set from the
schedule (deepatlas.core.schedules) and the optimizer steps.

Steps count updates: "step k" is the model after k updates. losses[k] is the loss measured on
that model (the loss of update k), get_batch(k, micro) feeds it, and a checkpoint "at step k"
holds the model after k updates, so resuming from it continues with get_batch(k, 0).

Exact resume: get_batch must be a deterministic function of (step, micro); the checkpoint holds
model, optimizer, RNG states (dropout) and the losses so far, so N steps + resume + N steps
gives the same losses and weights as 2N steps straight (tests/core/test_train.py).

Precision: fp32; bf16 = autocast to bfloat16 (CPU or GPU; bf16 keeps fp32's exponent range, so
no loss scaling is needed); fp16 = autocast to float16 with GradScaler loss scaling, GPU only —
on CPU it is an error rather than a silent switch to bf16, because a run that asked for fp16
and got something else would report numbers for a precision it did not use.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from deepatlas.core.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from deepatlas.core.hardware import PRECISIONS
from deepatlas.core.runs import Run
from deepatlas.core.schedules import SCHEDULES, lr_at

OPTIMIZERS = ("adamw", "adam", "sgd", "muon")


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 3e-4
    min_lr: float = 0.0
    warmup: int = 0
    schedule: str = "cosine"  # constant | cosine | linear | inverse_sqrt | wsd
    cooldown: float = 0.2  # wsd: the last fraction of the steps, decaying to min_lr
    optimizer: str = "adamw"  # adamw | adam | sgd | muon (Muon on hidden matrices, AdamW on the rest)
    muon_lr: float = 0.02  # muon: the peak rate of the Muon part (lr is the AdamW part's)
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.0
    grad_accum: int = 1
    clip: float = 1.0  # max global gradient norm; 0 = off
    precision: str = "fp32"  # fp32 | bf16 | fp16
    eval_every: int = 0
    checkpoint_every: int = 0
    log_every: int = 10
    seed: int = 0
    progress: bool = True


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # one per step, from step 0 (across resumes)
    evals: list[dict] = field(default_factory=list)  # evaluate(model) results, each with "step"
    step: int = 0  # updates done
    seconds: float = 0.0  # wall time of this call
    samples_per_s: float = 0.0  # samples seen by this call / seconds


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the step is named and no checkpoint was written after it."""


def _check(cfg: TrainConfig, device: torch.device) -> None:
    for name, value, valid in (("optimizer", cfg.optimizer, OPTIMIZERS),
                               ("schedule", cfg.schedule, tuple(SCHEDULES)),
                               ("precision", cfg.precision, PRECISIONS)):
        if value not in valid:
            raise ValueError(f"train.{name}={value!r}; valid: {', '.join(valid)}")
    if cfg.grad_accum < 1 or cfg.steps < 0:
        raise ValueError(f"train.grad_accum={cfg.grad_accum} must be ≥ 1 and train.steps={cfg.steps} ≥ 0")
    if cfg.precision == "fp16" and device.type != "cuda":
        raise ValueError(f"train.precision='fp16' needs a cuda device (model is on {device.type}); "
                         "use precision=bf16, which needs no loss scaling, or fp32")


def muon_matrices(model: nn.Module) -> list[Tensor]:
    """The weights Muon should update: the matrices of nn.Linear layers inside the network. Not
    embeddings (a lookup table, not a linear map of activations), not a head named lm_head or tied
    to an embedding (Jordan et al. 2024 keep both with AdamW)."""
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [m.weight for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and m.weight.requires_grad and id(m.weight) not in tables
            and not name.endswith("lm_head")]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer cfg names. AdamW decays only ≥2-D weights (matrices, embeddings): shrinking
    biases and norm gains toward 0 regularises nothing useful (as in GPT-2/nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "muon":
        from deepatlas.foundations.optim import MuonWithAdamW

        hidden = muon_matrices(model)
        chosen = {id(p) for p in hidden}
        rest = [p for p in params if id(p) not in chosen]
        return MuonWithAdamW(hidden, _decay_groups(rest, cfg.weight_decay), muon_lr=cfg.muon_lr,
                             adamw_lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(_decay_groups(params, cfg.weight_decay), lr=cfg.lr, betas=betas)


def _decay_groups(params: list[Tensor], weight_decay: float) -> list[dict]:
    """AdamW groups: decay on ≥2-D weights (matrices, embeddings), none on biases and gains.
    A parameter with an `lr_scale` attribute (e.g. Flamingo's tanh gates, models/vlm.py) gets its own
    group stepped at lr_scale × the schedule's rate (the loop reads group["lr_scale"])."""
    groups = []
    for scale in sorted({float(getattr(p, "lr_scale", 1.0)) for p in params}):
        mine = [p for p in params if float(getattr(p, "lr_scale", 1.0)) == scale]
        extra = {} if scale == 1.0 else {"lr_scale": scale}
        groups += [{"params": [p for p in mine if p.dim() >= 2], "weight_decay": weight_decay, **extra},
                   {"params": [p for p in mine if p.dim() < 2], "weight_decay": 0.0, **extra}]
    return [g for g in groups if g["params"]]


def _batch_size(batch: Any) -> int:
    """Samples in a batch: a tensor's first dimension, or that of the first tensor inside."""
    if isinstance(batch, Tensor):
        return batch.shape[0] if batch.dim() else 1
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    return 1


def _progress_bar(cfg: TrainConfig, start: int):
    from tqdm import tqdm

    show = cfg.progress and sys.stderr.isatty()
    return tqdm(total=cfg.steps, initial=start, disable=not show, file=sys.stderr, dynamic_ncols=True)


def train(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor], get_batch: Callable[[int, int], Any],
          cfg: TrainConfig, run: Run | None = None, evaluate: Callable[[nn.Module], dict] | None = None,
          checkpoint_dir: Path | None = None, resume: bool = False) -> TrainResult:
    """Train `model` for cfg.steps updates of loss_fn(model, get_batch(step, micro)).

    evaluate(model) runs (in eval mode, without gradients) every cfg.eval_every steps and at the
    end. resume=True continues from the newest checkpoint in checkpoint_dir (from scratch when
    there is none yet). Raises TrainingDiverged when a loss is not finite."""
    device = next(model.parameters()).device
    _check(cfg, device)
    torch.manual_seed(cfg.seed)
    optimizer = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    autocast = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext
    result = TrainResult()
    cfg_dict = dataclasses.asdict(cfg)

    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir, the folder the checkpoints are in")
        if latest_checkpoint(checkpoint_dir) is None:
            warnings.warn(f"resume=True but {checkpoint_dir} holds no checkpoint yet: starting from step 0")
        else:
            state = load_checkpoint(checkpoint_dir, model, optimizer)  # also restores the RNGs
            result.step = state["step"]
            result.losses = list(state["extra"].get("losses", []))
            result.evals = list(state["extra"].get("evals", []))
            if run is not None and "log_bytes" in state["extra"]:
                run.truncate_log(state["extra"]["log_bytes"])  # drop lines logged after the checkpoint
            if scaler is not None and "grad_scaler" in state["extra"]:
                scaler.load_state_dict(state["extra"]["grad_scaler"])
            changed = {k: (v, cfg_dict[k]) for k, v in state["config"].items()
                       if k in cfg_dict and cfg_dict[k] != v and k not in ("progress", "log_every")}
            if changed:
                warnings.warn(f"resuming with a changed config (saved, now): {changed}")

    def checkpoint(step: int) -> None:
        extra = {"losses": result.losses, "evals": result.evals}
        if run is not None:
            extra["log_bytes"] = run.log_bytes()
        if scaler is not None:
            extra["grad_scaler"] = scaler.state_dict()
        save_checkpoint(checkpoint_dir, model, optimizer, step, cfg_dict, extra)

    def run_eval(step: int) -> None:
        model.eval()
        with torch.no_grad():
            metrics = {"step": step, **evaluate(model)}
        model.train()
        result.evals.append(metrics)
        if run is not None:
            run.log(**metrics)

    model.train()
    bar = _progress_bar(cfg, result.step)
    samples, start_step, start_time = 0, result.step, time.perf_counter()
    try:
        for step in range(result.step, cfg.steps):
            lr = lr_at(cfg, step)
            for group in optimizer.param_groups:  # lr_scale: Muon's part of MuonWithAdamW
                group["lr"] = lr * group.get("lr_scale", 1.0)
            total = None  # Σ of the micro-batch losses, kept on the device until the one .item()
            for micro in range(cfg.grad_accum):
                batch = get_batch(step, micro)
                samples += _batch_size(batch)
                with autocast():
                    # gradient accumulation: the mean over micro-batches, L = Σ_m L_m / grad_accum
                    loss = loss_fn(model, batch)
                    if cfg.grad_accum > 1:
                        loss = loss / cfg.grad_accum
                (scaler.scale(loss) if scaler is not None else loss).backward()
                total = loss.detach() if total is None else total + loss.detach()
            loss_value = total.item()  # the one host sync per step: the NaN guard needs it
            if not math.isfinite(loss_value):
                raise TrainingDiverged(
                    f"loss is {loss_value} at step {step} (lr {lr:.3g}); stopped before updating the "
                    f"weights. The last checkpoint (if any) is from before step {step} and untouched.")
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            if cfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            result.losses.append(loss_value)
            done = step + 1
            result.step = done
            bar.update(1)
            if (cfg.log_every > 0 and step % cfg.log_every == 0) or done == cfg.steps:  # 0: last only
                rate = samples / max(time.perf_counter() - start_time, 1e-9)
                bar.set_postfix(loss=f"{loss_value:.4g}", lr=f"{lr:.3g}", samples_s=f"{rate:.0f}", refresh=False)
                if run is not None:
                    run.log(step=step, loss=loss_value, lr=lr, samples_per_s=rate)
            if evaluate is not None and (done == cfg.steps or (cfg.eval_every > 0 and done % cfg.eval_every == 0)):
                run_eval(done)
            if checkpoint_dir is not None and (
                    (cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0) or done == cfg.steps):
                checkpoint(done)
    finally:
        bar.close()
    result.seconds = time.perf_counter() - start_time
    result.samples_per_s = samples / result.seconds if result.step > start_step else 0.0
    return result
