"""L10: SmolLM2-135M run past its trained context, with and without YaRN.

SmolLM2-135M-Instruct's GGUF metadata says llama.context_length = 8192 (general.finetune
"8k-lc100k": context extended to 8k with RoPE base 100 000). We feed it long Austen passages of
`eval_len` tokens — by default 16 384 = 2× that context — and measure the next-token loss at every
position, once with its plain RoPE and once with YaRN (Peng et al. 2023, deepatlas.nn.rope_scaling:
NTK-by-parts frequencies θ'_i = (1 − γ_i) θ_i / s + γ_i θ_i and the attention temperature
√(1/t) = 0.1 ln s + 1, original length 8192) at factor s = 2 and s = 4, zero-shot (no training).

Data: passages from the middle of the novels (one per novel, starting at the first paragraph after
45% of the text), line wraps joined into paragraphs, tokenized by the GGUF's own tokenizer, the
first `eval_len` tokens kept. Deterministic.

Measured: the mean loss per bucket of `bucket` positions (so perplexity against position), the
loss inside the trained context over positions [L/2, L) ("in", where every token already has a
long context) and past it over [L, eval_len) ("beyond"), L = 8192; rise = beyond − in (nats).
CPU cost: one 16k-token forward takes ~1 min at one thread in bf16 autocast (3.5× faster than fp32
at 4k tokens, measured), so the forwards run in bf16; `precision_check_len` tokens are scored in
both fp32 and bf16 and the difference is reported (bf16_nll_diff).

Held rule (full setting, eval_len > L): plain RoPE's loss rises past L by ≥ min_rise_plain nats,
YaRN (s = 2, the factor that covers eval_len) stays within max_rise_yarn nats of its own in-context
loss, and YaRN costs at most max_in_cost nats inside the trained context (in-loss − plain's).
The thresholds were set from a first one-passage probe at 16 384 tokens (plain rise +1.15 nats,
flat up to ~10k then climbing; YaRN s=2 rise +0.001, in-context cost +0.027).
The quick setting (2048 tokens, one passage) cannot reach past 8192 tokens in its time budget;
it checks the last part only — YaRN's in-context cost — and says so in its notes.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run


@dataclass
class Config:
    eval_len: int = 16384            # tokens per passage (2× the trained 8192)
    n_passages: int = 2              # one per novel, ≤ 6
    factors: tuple[float, ...] = (2.0, 4.0)  # YaRN scale factors s
    bucket: int = 1024               # positions per perplexity bucket
    bf16: bool = True                # bf16 autocast for the long forwards
    precision_check_len: int = 1024  # tokens scored in both fp32 and bf16
    min_rise_plain: float = 0.5      # held: plain RoPE's loss rise past L ≥ this (nats)
    max_rise_yarn: float = 0.1       # held: YaRN (s=2) rise past L ≤ this (nats)
    max_in_cost: float = 0.1         # held: YaRN's in-context loss − plain's ≤ this (nats)
    threads: int = 1


def passages(tokenizer, n: int, length: int) -> list[list[int]]:
    """`n` passages of `length` tokens, one per Austen novel, from the first paragraph after 45%."""
    from deepatlas.data.austen import austen_texts

    texts = list(austen_texts().values())
    if not 1 <= n <= len(texts):
        raise ValueError(f"n_passages={n}; valid: 1..{len(texts)} (one per novel)")
    out = []
    for text in texts[:n]:
        start = text.index("\n\n", int(len(text) * 0.45)) + 2
        body = re.sub(r"(?<!\n)\n(?!\n)", " ", text[start:start + 6 * length])   # join line wraps
        ids = tokenizer.encode(body)
        if len(ids) < length:
            raise ValueError(f"a passage has {len(ids)} tokens, fewer than eval_len={length}")
        out.append(ids[:length])
    return out


def set_rope(model, rope) -> None:
    """Every attention layer of our Llama uses `rope` (one shared table)."""
    model.rope = rope
    for block in model.blocks:
        block.self_attn.rope = rope


@torch.no_grad()
def token_nll(model, ids: list[int], bf16: bool, chunk: int = 1024) -> Tensor:
    """−log P(x_{t+1} | x_≤t) for t = 0..T−2 (fp32, shape (T−1,)), one causal forward of all T
    tokens past any context limit; the vocabulary head runs `chunk` positions at a time."""
    x = torch.tensor(ids[:-1])[None]                                  # (1, T−1)
    y = torch.tensor(ids[1:])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        h = model.embed(x)                                            # (1, T−1, d)
        for block in model.blocks:
            h = block(h, causal=True)
        h = model.norm(h)
        out = [F.cross_entropy(model.lm_head(h[0, s:s + chunk]).float(), y[s:s + chunk], reduction="none")
               for s in range(0, len(y), chunk)]
    return torch.cat(out)


@experiment("L10", "smollm2-yarn",
            claim="SmolLM2-135M (trained context 8192) run to 2× its context on Austen: plain RoPE's loss "
                  "rises past 8192 tokens, zero-shot YaRN (s=2) keeps it near its in-context value and "
                  "costs little inside the context",
            config=Config,
            quick={"eval_len": 2048, "n_passages": 1, "factors": "2", "bucket": 512, "precision_check_len": 512},
            headline={"rise_plain": ("plain RoPE loss rise past 8192 (nats)", "{:+.3f}"),
                      "rise_yarn2": ("YaRN s=2 loss rise past 8192 (nats)", "{:+.3f}"),
                      "in_cost_yarn2": ("YaRN s=2 in-context cost (nats)", "{:+.3f}"),
                      "beyond_ppl_plain": ("plain RoPE perplexity past 8192", "{:.2f}"),
                      "beyond_ppl_yarn2": ("YaRN s=2 perplexity past 8192", "{:.2f}")})
def smollm2_yarn(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepatlas.chat.tokenizer import tokenizer_from_gguf
    from deepatlas.models.llama import from_gguf
    from deepatlas.nn.positions import RotaryEmbedding
    from deepatlas.nn.rope_scaling import scaled_rope
    from deepatlas.quant.weights import require_smollm2

    if cfg.eval_len < 2 * cfg.bucket or cfg.eval_len % cfg.bucket:
        raise ValueError(f"eval_len={cfg.eval_len} must be a multiple of bucket={cfg.bucket}, at least 2 buckets")
    if not cfg.factors or min(cfg.factors) < 1:
        raise ValueError(f"factors={cfg.factors}; valid: a non-empty tuple of YaRN factors ≥ 1")
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    model = from_gguf(require_smollm2())
    mc = model.config
    L = mc.context_length                                             # 8192, from the GGUF metadata
    tok = tokenizer_from_gguf(model.gguf_metadata)
    rows = passages(tok, cfg.n_passages, cfg.eval_len)
    run.print(f"loaded SmolLM2 (trained context {L}, RoPE base {mc.rope_theta:g}) and "
              f"{len(rows)} passage(s) of {cfg.eval_len} tokens in {time.perf_counter() - t0:.1f} s")

    ropes = {"plain": RotaryEmbedding(mc.head_dim, cfg.eval_len, mc.rope_theta)}
    for s in cfg.factors:
        ropes[f"yarn{s:g}"] = scaled_rope("yarn", mc.head_dim, mc.rope_theta, s, original_max_len=L,
                                          max_len=cfg.eval_len)
    # bf16 vs fp32 on a short prefix (plain RoPE): the autocast's effect on the loss
    set_rope(model, ropes["plain"])
    short = rows[0][:cfg.precision_check_len]
    bf16_diff = float(token_nll(model, short, True).mean() - token_nll(model, short, False).mean())
    run.print(f"bf16 − fp32 mean loss on {len(short)} tokens: {bf16_diff:+.4f} nats")

    n_b = cfg.eval_len // cfg.bucket
    curves, seconds = {}, {}
    for name, rope in ropes.items():
        set_rope(model, rope)
        t = time.perf_counter()
        nll = torch.stack([token_nll(model, ids, cfg.bf16) for ids in rows])     # (P, T−1)
        seconds[name] = time.perf_counter() - t
        nll = F.pad(nll, (1, 0), value=float("nan"))                              # position 0 has no target
        curves[name] = nll
        per_bucket = nll.view(len(rows), n_b, cfg.bucket).nanmean(dim=(0, 2))     # (n_b,)
        run.log(setting=name, seconds=seconds[name], bucket_loss=per_bucket.tolist())
        run.print(f"{name:>8}: {seconds[name]:.0f} s; loss per {cfg.bucket}-token bucket "
                  + " ".join(f"{v:.2f}" for v in per_bucket.tolist()))

    def mean_loss(name: str, lo: int, hi: int) -> float:
        return float(curves[name][:, lo:hi].nanmean())

    beyond = cfg.eval_len > L
    in_lo, in_hi = (L // 2, L) if beyond else (1, cfg.eval_len)
    m: dict = {"trained_context": L, "eval_len": cfg.eval_len, "passages": len(rows), "bf16": cfg.bf16,
               "bf16_nll_diff": bf16_diff, "seconds": seconds}
    for name in ropes:
        m[f"in_loss_{name}"] = mean_loss(name, in_lo, in_hi)
        m[f"in_ppl_{name}"] = float(torch.tensor(m[f"in_loss_{name}"]).exp())
        if beyond:
            m[f"beyond_loss_{name}"] = mean_loss(name, L, cfg.eval_len)
            m[f"beyond_ppl_{name}"] = float(torch.tensor(m[f"beyond_loss_{name}"]).exp())
            m[f"rise_{name}"] = m[f"beyond_loss_{name}"] - m[f"in_loss_{name}"]
        if name != "plain":
            m[f"in_cost_{name}"] = m[f"in_loss_{name}"] - m["in_loss_plain"]
        m[f"bucket_ppl_{name}"] = curves[name].view(len(rows), n_b, cfg.bucket).nanmean(dim=(0, 2)).exp().tolist()

    # the YaRN factor that covers eval_len: the smallest s with s·L ≥ eval_len (s = 2 by default)
    covering = [s for s in sorted(cfg.factors) if s * L >= cfg.eval_len]
    key = f"yarn{(covering or sorted(cfg.factors)[-1:])[0]:g}"
    m["yarn_key"] = key
    checks = {"in_cost": m[f"in_cost_{key}"] <= cfg.max_in_cost}
    if beyond:
        checks["plain_rises"] = m["rise_plain"] >= cfg.min_rise_plain
        checks["yarn_flat"] = m[f"rise_{key}"] <= cfg.max_rise_yarn
    m["checks"] = checks

    fig, ax = plt.subplots(figsize=(8, 4.5))
    centres = [(i + 0.5) * cfg.bucket for i in range(n_b)]
    for name in ropes:
        ax.plot(centres, m[f"bucket_ppl_{name}"], marker="o", label="plain RoPE" if name == "plain"
                else f"YaRN s={name[4:]}")
    if beyond:
        ax.axvline(L, color="grey", ls="--", label=f"trained context {L}")
    ax.set(xlabel="position in the passage (tokens)", ylabel=f"perplexity ({cfg.bucket}-token buckets)",
           title=f"SmolLM2-135M on {len(rows)} Austen passage(s), {'bf16' if cfg.bf16 else 'fp32'}")
    ax.set_yscale("log")
    ax.legend()
    run.savefig(fig, "perplexity_vs_position")

    if beyond:
        notes = (f"past {L}: plain RoPE loss {m['in_loss_plain']:.3f} -> {m['beyond_loss_plain']:.3f} "
                 f"(rise {m['rise_plain']:+.3f}, need ≥ {cfg.min_rise_plain}); {key} {m[f'in_loss_{key}']:.3f} -> "
                 f"{m[f'beyond_loss_{key}']:.3f} (rise {m[f'rise_{key}']:+.3f}, need ≤ {cfg.max_rise_yarn}); "
                 f"in-context cost {m[f'in_cost_{key}']:+.3f} (need ≤ {cfg.max_in_cost})")
    else:
        notes = (f"eval_len {cfg.eval_len} ≤ trained context {L}: only YaRN's in-context cost is checked "
                 f"({m[f'in_cost_{key}']:+.3f} nats, need ≤ {cfg.max_in_cost}); the full setting goes past {L}")
    return Verdict(held=all(checks.values()), metrics=m, notes=notes)
