"""L2: pretrain a GPT on Jane Austen's novels; measure perplexity and bits per character.

A causal LM minimises the next-token cross-entropy  L = −(1/N) Σ_t ln P(x_{t+1} | x_≤t)  (nats).
    perplexity       = e^L
    bits per token   = L / ln 2
    bits per char    = L / ln 2 · (tokens / chars)          (= bits per token for characters)
The yardstick is the unigram entropy H₁ = −Σ_c p(c) log₂ p(c) of the characters: a model that
ignored context could do no better. The full setting is nanoGPT's CPU recipe for
Shakespeare-char (4 layers, 4 heads, 128 dims, context 64, batch 12, 2000 iterations, lr 1e-3,
no dropout), for which nanoGPT's README reports a validation loss of 1.88 nats/char.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.data.lm import LMDataset
from deepatlas.generation.decode import SamplingSettings, stream_long
from deepatlas.generation.runfolder import save_bpe_tokenizer, save_char_tokenizer, save_model
from deepatlas.models.gpt import GPT, GPTConfig, lm_loss

NANOGPT_CPU_VAL_LOSS = 1.88   # nats/char, nanoGPT README, Shakespeare-char on a MacBook CPU


@dataclass
class Config:
    tokenizer: str = "char"          # char | bpe (byte-level BPE from deepatlas.text)
    bpe_vocab: int = 512
    corpus_chars: int = 0            # 0 = the whole corpus (~4M chars); > 0 = its first n chars
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    batch_size: int = 12
    eval_batches: int = 20
    sample_chars: int = 400
    # held: val bits/char at least this far below the unigram entropy, and (if set) val loss ≤ target
    margin_bits: float = 1.0
    target_val_loss: float | None = NANOGPT_CPU_VAL_LOSS
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=2000, lr=1e-3, min_lr=1e-4, warmup=100, schedule="cosine", beta2=0.99,
        weight_decay=0.1, eval_every=250, log_every=50, checkpoint_every=250))


def unigram_entropy_bits(text: str) -> float:
    """H₁ = −Σ_c p(c) log₂ p(c) over the characters of `text`."""
    n = len(text)
    return -sum(k / n * math.log2(k / n) for k in Counter(text).values())


def load_corpus(cfg: Config) -> str:
    from deepatlas.data.austen import austen_corpus

    text = austen_corpus()
    return text[:cfg.corpus_chars] if cfg.corpus_chars > 0 else text


def tokenize(cfg: Config, text: str, run: Run) -> tuple[torch.Tensor, float, callable, int]:
    """-> ids, chars per token, decode, vocab size; saves the tokenizer into the run folder."""
    if cfg.tokenizer == "char":
        from deepatlas.text.char import CharTokenizer

        tok = CharTokenizer.from_text(text)
        save_char_tokenizer(run.dir, tok.chars)
        return torch.tensor(tok.encode(text)), 1.0, tok.decode, len(tok)
    if cfg.tokenizer == "bpe":
        from deepatlas.text.bpe import ByteLevelBPE

        start = time.time()
        bpe = ByteLevelBPE.train(text[:500_000], cfg.bpe_vocab)    # merges learned on a prefix
        ids = bpe.encode(text)
        run.print(f"BPE: {len(bpe)} tokens, {len(text) / len(ids):.2f} chars/token "
                  f"({time.time() - start:.0f} s)")
        save_bpe_tokenizer(run.dir, bpe)
        return torch.tensor(ids), len(text) / len(ids), bpe.decode, len(bpe)
    raise ValueError(f"tokenizer={cfg.tokenizer!r}; valid: char, bpe")


@experiment("L2", "gpt-pretrain",
            claim="a GPT pretrained on Jane Austen predicts held-out text far better than the "
                  "character unigram entropy (val bits/char ≥ 1 bit below it), and in the full "
                  "setting reaches nanoGPT's published CPU validation loss of 1.88 nats/char",
            config=Config,
            quick={"n_layer": 2, "block_size": 32, "batch_size": 16, "train.steps": 300,
                   "train.lr": 3e-3, "train.min_lr": 3e-4, "train.warmup": 10,
                   "train.eval_every": 100, "train.log_every": 10, "train.weight_decay": 0.0,
                   "eval_batches": 4, "sample_chars": 120,
                   "corpus_chars": 400000, "target_val_loss": "none"},
            headline={"val_loss_nats_per_char": ("val loss", "{:.3f} nats/char"),
                      "val_bits_per_char": ("val", "{:.3f} bits/char"),
                      "bits_below_unigram": ("below the unigram entropy", "{:.2f} bits/char")})
def gpt_pretrain(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(cfg.seed)
    text = load_corpus(cfg)
    ids, chars_per_token, decode, vocab = tokenize(cfg, text, run)
    data = LMDataset(ids, val_fraction=0.1)
    # H₁ measured on the validation text, the text the model's bits/char are measured on
    val_text = text[len(text) - int(len(text) * 0.1):]
    h1 = unigram_entropy_bits(val_text)
    model = GPT(GPTConfig(vocab_size=vocab, block_size=cfg.block_size, n_layer=cfg.n_layer,
                          n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=cfg.dropout)).to(run.device)
    run.print(f"{len(text):,} chars, {len(ids):,} tokens, vocab {vocab}, "
              f"{model.num_params():,} parameters; unigram entropy {h1:.3f} bits/char")

    def mean_loss(split: str) -> float:   # fixed batches (steps 0..n-1 of the split): same each eval
        losses = [lm_loss(model, tuple(t.to(run.device) for t in data.get_batch(
            split, i, 0, cfg.batch_size, cfg.block_size, seed=10_000 + cfg.seed)))
            for i in range(cfg.eval_batches)]
        return float(torch.stack(losses).mean())

    def evaluate(_model) -> dict:
        val, tr = mean_loss("val"), mean_loss("train")
        return {"val_loss": val, "train_loss": tr,
                "val_bpc": val / math.log(2) / chars_per_token}

    get_batch = lambda step, micro: tuple(   # noqa: E731
        t.to(run.device) for t in data.get_batch("train", step, micro, cfg.batch_size,
                                                 cfg.block_size, cfg.seed))
    result = train(model, lm_loss, get_batch, cfg.train, run=run, evaluate=evaluate,
                   checkpoint_dir=run.checkpoint_dir, resume=run.resuming)
    final = result.evals[-1]
    val_loss, val_bpc = final["val_loss"], final["val_bpc"]
    save_model(run.dir, model)

    prompt = [int(i) for i in ids[len(ids) - len(ids) // 10: len(ids) - len(ids) // 10 + 8]]
    settings = SamplingSettings(greedy=False, temperature=0.8, top_k=40)
    sample = decode(prompt + list(stream_long(model, prompt, max(1, int(cfg.sample_chars / chars_per_token)),
                                              settings, seed=cfg.seed)))
    (run.dir / "sample.txt").write_text(sample)
    run.print("sample:\n" + sample)

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = range(len(result.losses))
    ax.plot(steps, [l / math.log(2) / chars_per_token for l in result.losses], lw=0.6, label="train (batch)")
    ax.plot([e["step"] for e in result.evals], [e["val_bpc"] for e in result.evals], "o-", label="val")
    ax.axhline(h1, color="gray", ls="--", label=f"unigram entropy {h1:.2f}")
    if cfg.target_val_loss is not None:
        ax.axhline(cfg.target_val_loss / math.log(2), color="green", ls=":",
                   label=f"nanoGPT CPU val {cfg.target_val_loss} nats")
    ax.set(xlabel="step", ylabel="bits per character", title=f"GPT on Austen ({cfg.tokenizer})")
    ax.legend()
    run.savefig(fig, "loss_curves")

    below = h1 - val_bpc
    held = below >= cfg.margin_bits and (cfg.target_val_loss is None or
                                         val_loss / chars_per_token <= cfg.target_val_loss)
    metrics = {"val_loss_nats_per_token": round(val_loss, 4),
               "val_loss_nats_per_char": round(val_loss / chars_per_token, 4), "val_perplexity": round(math.exp(val_loss), 3),
               "val_bits_per_char": round(val_bpc, 4), "train_loss": round(final["train_loss"], 4),
               "unigram_entropy_bits": round(h1, 4), "bits_below_unigram": round(below, 4),
               "chars_per_token": round(chars_per_token, 3), "params": model.num_params(),
               "steps": result.step, "train_seconds": round(result.seconds, 1),
               "samples_per_s": round(result.samples_per_s, 1)}
    return Verdict(held=held, metrics=metrics,
                   notes=f"val {val_bpc:.3f} bits/char vs unigram entropy {h1:.3f}"
                         + ("" if cfg.target_val_loss is None else
                            f"; val loss {val_loss / chars_per_token:.3f} nats/char vs target {cfg.target_val_loss}"))
