"""L2: a modern training recipe ("speedrun") against the nanoGPT CPU recipe, by wall-clock time.

The reference is gpt-pretrain's full setting: nanoGPT's CPU recipe for Shakespeare-char (GPT-2
architecture, 4 layers × 128 dims, context 64, batch 12, AdamW lr 1e-3 cosine to 1e-4, 2000
steps) on Jane Austen's characters. The speedrun is the same data, batch, context and model size
with the changes the modded-nanoGPT speedruns (Jordan et al. 2024) made standard:
    Muon for the hidden matrices (foundations/optim.py; AdamW for embeddings, head and gains),
    RoPE, RMSNorm, QK-norm, ReLU², an untied head, zero-initialised output projections, logit
    soft-capping, and a warmup-stable-decay schedule (each a GPTConfig / TrainConfig field).

Both recipes train in lock step in one process — one step of each in turn, each step timed on
its own — so a slow spell of a shared machine slows both alike; evaluations are not counted.
Measured per seed: each recipe's val loss against training seconds, the speedrun's time to
reach the reference's final val loss (linear interpolation between evaluations), and the val
loss the speedrun has reached at the reference's whole training time (or at its own end if
that comes first). Held: over the seeds, the median time to the target is ≤ `max_time_ratio`
of the reference's training time.
The ablation (experiment gpt-speedrun-ablation) turns each change off on its own.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, make_optimizer
from deepatlas.core.schedules import lr_at
from deepatlas.data.lm import LMDataset
from deepatlas.models.gpt import GPT, GPTConfig, lm_loss


@dataclass
class Recipe:
    """The speedrun's changes: GPTConfig fields (model) and TrainConfig fields (training)."""
    # model (GPT-2: bias=True, learned, layernorm, no qk_norm, gelu_tanh, tied, 1/√N init, no cap)
    bias: bool = False
    positions: str = "rope"
    norm: str = "rmsnorm"
    qk_norm: bool = True
    activation: str = "relu2"
    tie_head: bool = False
    zero_init_proj: bool = True
    logit_softcap: float = 15.0
    # training (nanoGPT: AdamW lr 1e-3 cosine to 1e-4, warmup 100, β₂ 0.99, weight decay 0.1)
    optimizer: str = "muon"
    muon_lr: float = 0.02
    lr: float = 3e-3
    min_lr: float = 0.0
    warmup: int = 50
    schedule: str = "wsd"
    cooldown: float = 0.3
    beta2: float = 0.95
    weight_decay: float = 0.0


MODEL_FIELDS = ("bias", "positions", "norm", "qk_norm", "activation", "tie_head", "zero_init_proj", "logit_softcap")


def model_options(recipe: Recipe) -> dict:
    return {k: v for k, v in asdict(recipe).items() if k in MODEL_FIELDS}


def train_options(recipe: Recipe, steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, **{k: v for k, v in asdict(recipe).items() if k not in MODEL_FIELDS})


# nanoGPT's README CPU recipe (the reference; gpt-pretrain's full setting)
REFERENCE_TRAIN = dict(lr=1e-3, min_lr=1e-4, warmup=100, schedule="cosine", beta2=0.99, weight_decay=0.1)


@dataclass
class Config:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    reference_steps: int = 2000
    speedrun_steps: int = 1000
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_every: int = 100
    eval_batches: int = 50           # fixed val batches (12 × 64 chars each)
    corpus_chars: int = 0            # 0 = all of Austen
    max_time_ratio: float = 0.5      # held: speedrun time-to-target ≤ this × reference time
    speedrun: Recipe = field(default_factory=Recipe)


def austen_chars(corpus_chars: int = 0) -> tuple[LMDataset, int]:
    from deepatlas.data.austen import austen_corpus
    from deepatlas.text.char import CharTokenizer

    text = austen_corpus()
    text = text[:corpus_chars] if corpus_chars > 0 else text
    tok = CharTokenizer.from_text(text)           # sorted characters, as nanoGPT's prepare.py
    return LMDataset(torch.tensor(tok.encode(text)), val_fraction=0.1), len(tok)


class Trainee:
    """One recipe's model, optimizer and clock, advanced one step at a time."""

    def __init__(self, name: str, model_kw: dict, train: TrainConfig, cfg: Config, vocab: int, seed: int):
        torch.manual_seed(seed)
        self.name, self.train_cfg, self.seed = name, train, seed
        self.model = GPT(GPTConfig(vocab_size=vocab, block_size=cfg.block_size, n_layer=cfg.n_layer,
                                   n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=0.0, **model_kw))
        self.opt = make_optimizer(self.model, train)
        self.step, self.seconds = 0, 0.0
        self.curve: list[tuple[int, float, float]] = []          # (step, training seconds, val loss)

    @property
    def done(self) -> bool:
        return self.step >= self.train_cfg.steps

    def advance(self, data: LMDataset, cfg: Config) -> None:
        start = time.perf_counter()
        lr = lr_at(self.train_cfg, self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        x, y = data.get_batch("train", self.step, 0, cfg.batch_size, cfg.block_size, self.seed)
        loss = lm_loss(self.model, (x, y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train_cfg.clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.seconds += time.perf_counter() - start
        self.step += 1
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{self.name} diverged at step {self.step} (loss {loss.item()})")

    def evaluate(self, data: LMDataset, cfg: Config) -> float:
        self.model.eval()
        with torch.no_grad():   # the same fixed val batches for every recipe and evaluation
            loss = torch.stack([lm_loss(self.model, data.get_batch("val", i, 0, cfg.batch_size, cfg.block_size,
                                                                     seed=10_000)) for i in range(cfg.eval_batches)])
        self.model.train()
        val = float(loss.mean())
        self.curve.append((self.step, self.seconds, val))
        return val


def race(trainees: list[Trainee], data: LMDataset, cfg: Config, run: Run) -> None:
    """Step every unfinished trainee in turn until all are done; evaluate every eval_every steps."""
    for t in trainees:
        t.evaluate(data, cfg)
    while not all(t.done for t in trainees):
        for t in trainees:
            if t.done:
                continue
            t.advance(data, cfg)
            if t.step % cfg.eval_every == 0 or t.done:
                val = t.evaluate(data, cfg)
                run.log(recipe=t.name, seed=t.seed, step=t.step, seconds=round(t.seconds, 3), val_loss=val)


def time_to_reach(curve: list[tuple[int, float, float]], target: float) -> float | None:
    """Training seconds at which the val-loss curve first reaches `target` (linear between
    evaluations), or None if it never does."""
    for (s0, t0, v0), (s1, t1, v1) in zip(curve, curve[1:]):
        if v1 <= target:
            return t1 if v0 == v1 else t0 + (t1 - t0) * (v0 - target) / (v0 - v1)
    return None


def loss_at_time(curve: list[tuple[int, float, float]], seconds: float) -> float:
    """Val loss of the last evaluation at or before `seconds` of training."""
    return [v for _, t, v in curve if t <= seconds + 1e-9][-1]


@experiment("L2", "gpt-speedrun",
            claim="on the same Austen characters, batch, context and model size, the modern recipe (Muon, RoPE, "
                  "RMSNorm, QK-norm, ReLU², untied head, zero-init projections, soft-capped logits, WSD schedule) "
                  "reaches the nanoGPT CPU recipe's final val loss in at most half its training time",
            config=Config, one_thread=True,
            quick={"n_layer": 2, "reference_steps": 160, "speedrun_steps": 80, "seeds": "0", "eval_every": 20,
                   "eval_batches": 4, "corpus_chars": 400_000, "speedrun.warmup": 10,
                   "max_time_ratio": 0.75},
            headline={"time_ratio_median": ("speedrun time to the reference's loss", "{:.2f}× its time"),
                      "reference_val_mean": ("reference final val loss", "{:.3f} nats/char"),
                      "speedrun_val_mean": ("speedrun final val loss", "{:.3f} nats/char"),
                      "speedrun_val_at_reference_time_mean": ("speedrun at the reference's time", "{:.3f} nats/char")})
def gpt_speedrun(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, vocab = austen_chars(cfg.corpus_chars)
    reference_train = TrainConfig(steps=cfg.reference_steps, **REFERENCE_TRAIN)
    speedrun_train = train_options(cfg.speedrun, cfg.speedrun_steps)
    per_seed = []
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for seed in cfg.seeds:
        ref = Trainee("reference", {}, reference_train, cfg, vocab, seed)
        fast = Trainee("speedrun", model_options(cfg.speedrun), speedrun_train, cfg, vocab, seed)
        race([ref, fast], data, cfg, run)
        target, ref_time = ref.curve[-1][2], ref.seconds
        reach = time_to_reach(fast.curve, target)
        row = {"seed": seed, "reference_val": round(target, 4), "reference_seconds": round(ref_time, 1),
               "speedrun_val": round(fast.curve[-1][2], 4), "speedrun_seconds": round(fast.seconds, 1),
               "time_to_target": None if reach is None else round(reach, 1),
               "time_ratio": None if reach is None else round(reach / ref_time, 3),
               "speedrun_val_at_reference_time": round(loss_at_time(fast.curve, ref_time), 4)}
        per_seed.append(row)
        run.print(f"seed {seed}: reference {target:.3f} in {ref_time:.0f} s; speedrun {row['speedrun_val']:.3f} "
                  f"in {fast.seconds:.0f} s, reached {target:.3f} at "
                  f"{'never' if reach is None else f'{reach:.0f} s ({reach / ref_time:.2f}×)'}")
        for t, style in ((ref, "C0"), (fast, "C3")):
            ax.plot([c[1] for c in t.curve], [c[2] for c in t.curve], color=style, lw=1,
                    label=f"{t.name}" if seed == cfg.seeds[0] else None)
    ax.axhline(1.665, color="gray", ls=":", label="nanoGPT's own code, same recipe: 1.665")
    ax.set(xlabel="training seconds (lock-step, one thread)", ylabel="val loss (nats/char)",
           title=f"Austen characters, {len(cfg.seeds)} seed(s)", ylim=(None, min(3.0, ax.get_ylim()[1])))
    ax.legend()
    run.savefig(fig, "val_loss_vs_time")

    ratios = [r["time_ratio"] for r in per_seed]
    reached = all(r is not None for r in ratios)
    median = statistics.median(ratios) if reached else None
    mean = lambda key: round(statistics.fmean(r[key] for r in per_seed), 4)  # noqa: E731
    spread = lambda key: [min(r[key] for r in per_seed), max(r[key] for r in per_seed)]  # noqa: E731
    metrics = {"per_seed": per_seed, "time_ratio_median": median,
               "time_ratios": ratios, "reference_val_mean": mean("reference_val"),
               "reference_val_range": spread("reference_val"), "speedrun_val_mean": mean("speedrun_val"),
               "speedrun_val_range": spread("speedrun_val"),
               "speedrun_val_at_reference_time_mean": mean("speedrun_val_at_reference_time"),
               "reference_seconds_mean": mean("reference_seconds"), "speedrun_seconds_mean": mean("speedrun_seconds"),
               "nanogpt_reference_val": 1.665}
    held = reached and median <= cfg.max_time_ratio
    return Verdict(held=held, metrics=metrics,
                   notes=f"speedrun reaches the reference's final val loss at {median}× its training time "
                         f"(median of {len(ratios)} seeds; held if ≤ {cfg.max_time_ratio})")
