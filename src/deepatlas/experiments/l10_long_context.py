"""L10: length generalisation — train at context L, evaluate to 4L.

Identical small character-level decoders on Jane Austen differ only in how they know positions:
learned absolute (GPT-2), sinusoidal (Vaswani et al.), RoPE (Su et al.), ALiBi (Press et al.) and
T5's bucketed relative bias (deepatlas.nn.relative_positions). The RoPE model is then run at 4L
three ways without training — position interpolation, NTK-aware base, YaRN (deepatlas.nn.rope_scaling,
factor s = 4) — and once after a short continued training with PI at 4L ("context extension").

Measured: the loss at each position of 4L-long held-out windows (so perplexity against
position), and passkey retrieval — a 4-digit key stated once (" key=4821. ") inside Austen
text, asked for at the end — against the sequence length (a quarter of the training rows are
passkey rows of length L). Claim (Press et al. 2022 Fig. 1; Chen et al. 2023; Peng et al. 2023):
past L the loss of learned, sinusoidal and plain RoPE positions rises while ALiBi's stays
flat, and rescaling RoPE recovers part of the rise without any training.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.nn.blocks import TransformerBlock
from deepatlas.nn.norms import LayerNorm
from deepatlas.nn.positions import LearnedPositions, RotaryEmbedding, SinusoidalPositions
from deepatlas.nn.relative_positions import T5RelativeBias, alibi_bias
from deepatlas.nn.rope_scaling import scaled_rope
from deepatlas.text.char import CharTokenizer

KINDS = ("learned", "sinusoidal", "rope", "alibi", "t5")


class PositionLM(nn.Module):
    """A pre-norm causal decoder whose only variable is the position scheme `kind`."""

    def __init__(self, kind: str, vocab: int, d: int, n_layer: int, n_head: int, max_len: int, train_len: int):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown position kind {kind!r}; valid: {', '.join(KINDS)}")
        self.kind, self.n_head = kind, n_head
        self.embed = nn.Embedding(vocab, d)
        self.absolute = {"learned": lambda: LearnedPositions(d, max_len),
                         "sinusoidal": lambda: SinusoidalPositions(d, max_len)}.get(kind, lambda: None)()
        rope = RotaryEmbedding(d // n_head, max_len) if kind == "rope" else None
        self.t5 = T5RelativeBias(n_head, 32, train_len, bidirectional=False) if kind == "t5" else None
        self.blocks = nn.ModuleList(TransformerBlock(d, n_head, 4 * d, norm_first=True, activation="gelu_tanh",
                                                     rope=rope) for _ in range(n_layer))
        self.norm = LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight
        nn.init.normal_(self.embed.weight, std=0.02)   # GPT-2's scale: learned positions start at 0.02 too
        self.scale = 1.0 if kind != "sinusoidal" else 0.02   # keep the fixed sinusoids at that scale

    def set_rope(self, rope: RotaryEmbedding) -> None:
        for b in self.blocks:
            b.self_attn.rope = rope

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.size(1)
        x = self.embed(idx)                                            # (B, T, d)
        if self.absolute is not None:
            x = x + self.scale * self.absolute(T)
        mask = None
        if self.kind == "alibi":
            mask = alibi_bias(self.n_head, T).to(x.device)             # (1, H, T, T): −m_h |i − j|
        elif self.kind == "t5":
            mask = self.t5(T, T)
        for b in self.blocks:
            x = b(x, mask=mask, causal=True)
        return self.head(self.norm(x))


@dataclass
class Config:
    corpus_chars: int = 1_000_000
    train_len: int = 64
    eval_factor: int = 4
    d_model: int = 64
    n_layer: int = 3
    n_head: int = 4
    batch_size: int = 16
    passkey_fraction: float = 0.25
    eval_windows: int = 48
    passkey_trials: int = 100
    ft_steps: int = 60               # continued training of RoPE + PI at eval_factor·L
    kinds: str = "learned,sinusoidal,rope,alibi,t5"
    min_recovery: float = 0.2         # held: best zero-shot RoPE scaling recovers ≥ 20% of RoPE's rise
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=700, lr=3e-3, min_lr=2e-4, warmup=50, schedule="cosine", log_every=100, progress=False))


def passkey_row(text: Tensor, tok: CharTokenizer, length: int, rng: random.Random) -> tuple[Tensor, list[int]]:
    """(length + 1,) ids: Austen filler with " key=dddd. " in its first half and " key=dddd"
    at the end -> the row and the positions (in the row) of the 4 answer digits."""
    key = "".join(str(rng.randrange(10)) for _ in range(4))
    fact, ask = tok.encode(f" key={key}. "), tok.encode(f" key={key}")
    n_fill = length + 1 - len(fact) - len(ask)
    if n_fill < 0:
        raise ValueError(f"a passkey row needs length ≥ {len(fact) + len(ask) - 1}, got {length}")
    start = rng.randrange(len(text) - n_fill)
    filler = text[start:start + n_fill].tolist()
    at = rng.randrange(max(1, n_fill // 2))
    row = filler[:at] + fact + filler[at:] + ask
    return torch.tensor(row), list(range(length + 1 - 4, length + 1))


def _batch(data: Tensor, tok: CharTokenizer, cfg: Config, length: int, step: int, micro: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 7 + micro)
    rng = random.Random(cfg.seed * 1_000_003 + step * 7 + micro)
    offsets = torch.randint(0, len(data) - length - 1, (cfg.batch_size,), generator=g)
    rows = [data[o:o + length + 1] for o in offsets.tolist()]
    for i in range(int(cfg.batch_size * cfg.passkey_fraction)):
        rows[i] = passkey_row(data, tok, length, rng)[0]
    batch = torch.stack(rows)
    return batch[:, :-1], batch[:, 1:]


@torch.no_grad()
def loss_by_position(model: nn.Module, val: Tensor, length: int, n: int) -> Tensor:
    """(length,) mean next-char loss at each position of n evenly spaced val windows."""
    starts = torch.linspace(0, len(val) - length - 2, n).long()
    windows = torch.stack([val[s:s + length + 1] for s in starts.tolist()])
    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none").mean(0)


@torch.no_grad()
def passkey_accuracy(model: nn.Module, val: Tensor, tok: CharTokenizer, length: int, trials: int, seed: int) -> float:
    rng = random.Random(seed)
    rows, answers = zip(*(passkey_row(val, tok, length, rng) for _ in range(trials)))
    batch = torch.stack(rows)
    pred = model(batch[:, :-1]).argmax(-1)                                  # (N, length)
    pos = torch.tensor(answers[0]) - 1                                      # predicting row[p] at p − 1
    return float((pred[:, pos] == batch[:, pos + 1]).all(1).float().mean())


def _bands(curve: Tensor, L: int) -> dict[str, float]:
    """Mean loss over positions [0, L), [L, 2L), [2L, 4L)."""
    return {"in": float(curve[:L].mean()), "2L": float(curve[L:2 * L].mean()), "4L": float(curve[2 * L:].mean())}


@experiment("L10", "long-context",
            claim="trained at context L and run to 4L, learned, sinusoidal and RoPE positions lose "
                  "accuracy past L while ALiBi's loss stays flat (the smallest rise of all), and "
                  "rescaling RoPE (PI / NTK / YaRN) recovers part of RoPE's rise without training",
            config=Config, one_thread=True,
            quick={"corpus_chars": 300_000, "train_len": 32, "d_model": 48, "n_layer": 2,
                   "batch_size": 8, "eval_windows": 16, "passkey_trials": 32, "ft_steps": 20,
                   "kinds": "learned,rope,alibi", "train.steps": 300, "train.lr": 3e-3, "train.log_every": 50},
            headline={"rise_rope": ("RoPE loss rise at 2L-4L", "{:+.3f} nats"),
                      "rise_alibi": ("ALiBi loss rise at 2L-4L", "{:+.3f} nats"),
                      "far_loss_rope+yarn": ("RoPE + YaRN loss at 2L-4L", "{:.3f} nats"),
                      "passkey_4L_alibi": ("ALiBi passkey at 4L", "{:.0%}")})
def long_context(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepatlas.data.austen import austen_corpus

    text = austen_corpus()[:cfg.corpus_chars]
    tok = CharTokenizer.from_text(text + "0123456789=")
    ids = torch.tensor(tok.encode(text))
    split = int(len(ids) * 0.9)
    data, val = ids[:split], ids[split:]
    L, far = cfg.train_len, cfg.train_len * cfg.eval_factor
    lengths = [L, 2 * L, far]
    kinds = [k.strip() for k in cfg.kinds.split(",")]
    curves, passkey, metrics = {}, {}, {}

    def evaluate(name: str, model: nn.Module) -> None:
        model.eval()
        curves[name] = loss_by_position(model, val, far, cfg.eval_windows)
        passkey[name] = [passkey_accuracy(model, val, tok, n, cfg.passkey_trials, cfg.seed + 1) for n in lengths]
        b = _bands(curves[name], L)
        metrics.update({f"in_loss_{name}": round(b["in"], 4), f"far_loss_{name}": round(b["4L"], 4),
                        f"rise_{name}": round(b["4L"] - b["in"], 4),
                        **{f"passkey_{k}_{name}": passkey[name][i] for i, k in enumerate(("L", "2L", "4L"))}})
        run.log(model=name, **{k: v for k, v in b.items()}, passkey=passkey[name])
        run.print(f"{name:>12}: loss [0,L) {b['in']:.3f}  [L,2L) {b['2L']:.3f}  [2L,4L) {b['4L']:.3f}; "
                  f"passkey at L/2L/4L {passkey[name]}")

    rope_model = None
    for kind in kinds:
        torch.manual_seed(cfg.seed)
        model = PositionLM(kind, len(tok), cfg.d_model, cfg.n_layer, cfg.n_head, 2 * far, L).to(run.device)
        batches = lambda step, micro, n=L: tuple(t.to(run.device) for t in _batch(data, tok, cfg, n, step, micro))  # noqa: E731
        train(model, lambda m, b: F.cross_entropy(m(b[0]).flatten(0, 1), b[1].flatten()), batches, cfg.train)
        evaluate(kind, model)
        if kind == "rope":
            rope_model = model
    if rope_model is not None:
        hd, s = cfg.d_model // cfg.n_head, float(cfg.eval_factor)
        for scaling in ("linear", "ntk", "yarn"):
            rope_model.set_rope(scaled_rope(scaling, hd, factor=s, original_max_len=L, max_len=2 * far))
            evaluate(f"rope+{ {'linear': 'pi'}.get(scaling, scaling) }", rope_model)
        # context extension: a short continued training with PI at the long length
        rope_model.set_rope(scaled_rope("linear", hd, factor=s, original_max_len=L, max_len=2 * far))
        rope_model.train()
        ft = TrainConfig(steps=cfg.ft_steps, lr=cfg.train.lr * 0.3, warmup=5, schedule="cosine", progress=False)
        batches = lambda step, micro: tuple(t.to(run.device) for t in _batch(  # noqa: E731
            data, tok, cfg, far, 10_000 + step, micro))
        train(rope_model, lambda m, b: F.cross_entropy(m(b[0]).flatten(0, 1), b[1].flatten()), batches, ft)
        evaluate("rope+pi-ft", rope_model)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    k = max(1, L // 8)
    for name, curve in curves.items():
        smooth = F.avg_pool1d(curve[None, None], k, stride=1).flatten()
        ax1.plot(range(k // 2, k // 2 + len(smooth)), smooth, label=name, lw=1.2,
                 ls="--" if "+" in name else "-")
        ax2.plot(lengths, passkey[name], "o-" if "+" not in name else "s--", label=name)
    ax1.axvline(L, color="gray", ls=":", label="trained length L")
    ax1.set(xlabel="position", ylabel="next-char loss (nats)", title=f"loss vs position, trained at L={L}")
    ax1.set_ylim(top=min(float(max(c.max() for c in curves.values())), 6.0))
    ax2.set(xlabel="sequence length", ylabel="passkey accuracy", xscale="log", title="passkey retrieval")
    ax2.set_xticks(lengths, [str(n) for n in lengths])
    ax1.legend(fontsize=7)
    run.savefig(fig, "length_generalisation")

    rises = {n: metrics[f"rise_{n}"] for n in kinds}
    others = [rises[n] for n in ("learned", "sinusoidal", "rope") if n in rises]
    alibi_flat = "alibi" in rises and all(rises["alibi"] < r for r in others)
    scaled = {n: metrics[f"far_loss_{n}"] for n in ("rope+pi", "rope+ntk", "rope+yarn") if f"far_loss_{n}" in metrics}
    recovery = 0.0
    if scaled and "rope" in rises and rises["rope"] > 0:
        best = min(scaled.values())
        recovery = (metrics["far_loss_rope"] - best) / rises["rope"]
    metrics.update({"recovery_best_scaling": round(recovery, 4), "train_len": L, "eval_len": far,
                    "best_zero_shot_scaling": min(scaled, key=scaled.get) if scaled else "none"})
    held = alibi_flat and recovery >= cfg.min_recovery
    return Verdict(held=held, metrics=metrics,
                   notes=f"loss rise from [0,L) to [2L,4L): " + ", ".join(f"{n} {r:+.2f}" for n, r in rises.items())
                         + f"; best zero-shot RoPE scaling {metrics['best_zero_shot_scaling']} recovers "
                           f"{recovery:.0%} of RoPE's rise")
