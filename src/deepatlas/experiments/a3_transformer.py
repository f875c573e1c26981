"""A3: an encoder-decoder Transformer learns a translation-like task and decodes longer inputs.

The task ("reverse and translate"): a source sentence of n words from a source alphabet is
rendered word by word into a target alphabet (a fixed random bijection, the "dictionary") in
reverse order, so every output word must attend to a different input position:

    source  s_1 s_2 ... s_n      target  m(s_n) ... m(s_2) m(s_1)  EOS

Length split: training sentences have lengths 1..train_max_len, plus a small fraction
(long_fraction) of lengths train_max_len+1..test_max_len; the held-out test set is fresh
sentences (none in the training pool) of the long lengths train_max_len+1..test_max_len, which
the model saw only rarely. Trained with label smoothing and the inverse-sqrt warmup schedule.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.models.transformer import Transformer, TransformerConfig

PAD, BOS, EOS, FIRST_WORD = 0, 1, 2, 3


@dataclass
class Config:
    words: int = 12              # alphabet size of each language
    train_max_len: int = 8       # most training sentences have ≤ this many words
    test_max_len: int = 10       # held-out sentences have train_max_len+1 .. test_max_len words
    long_fraction: float = 0.05  # share of training sentences with the held-out lengths
    pool: int = 20000            # training sentences (sampled once; test sentences avoid them)
    test_per_length: int = 300
    probe_lengths: int = 2       # also decode lengths test_max_len+1..+probe_lengths, never trained on
    batch: int = 128
    d_model: int = 64
    n_head: int = 4
    layers: int = 2
    d_ff: int = 128
    dropout: float = 0.0         # the task is noise-free; label smoothing is the regulariser here
    smoothing: float = 0.1
    beam_size: int = 4
    length_penalty: float = 0.6
    min_exact_match: float = 0.95
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=1500, lr=3e-3, warmup=150, schedule="inverse_sqrt", clip=1.0, log_every=25,
        checkpoint_every=250))


def sample_sentences(n: int, lengths: tuple[int, int], words: int, g: torch.Generator) -> list[tuple[int, ...]]:
    """n random sentences with lengths uniform in [lo, hi], word ids FIRST_WORD..FIRST_WORD+words-1."""
    lo, hi = lengths
    lens = torch.randint(lo, hi + 1, (n,), generator=g).tolist()
    return [tuple((torch.randint(0, words, (m,), generator=g) + FIRST_WORD).tolist()) for m in lens]


def translate(sentence: tuple[int, ...], dictionary: list[int]) -> list[int]:
    """The reference output: each word through the dictionary, in reverse order."""
    return [dictionary[w] for w in reversed(sentence)]


def to_batch(sentences: list[tuple[int, ...]], dictionary: list[int]) -> tuple[torch.Tensor, ...]:
    """-> src (B, S), tgt_in (B, T) = BOS + target, tgt_out (B, T) = target + EOS; PAD-filled."""
    B, S = len(sentences), max(len(s) for s in sentences)
    src = torch.full((B, S), PAD)
    tgt_in, tgt_out = torch.full((B, S + 1), PAD), torch.full((B, S + 1), PAD)
    for i, s in enumerate(sentences):
        t = translate(s, dictionary)
        src[i, :len(s)] = torch.tensor(s)
        tgt_in[i, :len(t) + 1] = torch.tensor([BOS] + t)
        tgt_out[i, :len(t) + 1] = torch.tensor(t + [EOS])
    return src, tgt_in, tgt_out


def exact_match(model: Transformer, sentences: list[tuple[int, ...]], dictionary: list[int],
                beam_size: int, length_penalty: float, chunk: int = 256) -> list[bool]:
    """Per sentence: is the decoded output exactly the reference (greedy if beam_size == 0)?"""
    model.eval()
    hits = []
    for i in range(0, len(sentences), chunk):
        part = sentences[i:i + chunk]
        src = to_batch(part, dictionary)[0]
        max_len = src.size(1) + 2
        if beam_size == 0:
            out = model.greedy(src, BOS, EOS, max_len)
        else:
            out = model.beam(src, BOS, EOS, max_len, beam_size=beam_size, length_penalty=length_penalty)
        hits += [o == translate(s, dictionary) for o, s in zip(out, part)]
    return hits


@experiment("A3", "transformer-translate",
            claim="an encoder-decoder Transformer (post-norm, sinusoidal positions, label smoothing, "
                  "inverse-sqrt warmup) reaches ≥ 95% exact match with greedy and with beam decoding on "
                  "held-out reverse-and-translate sentences longer than nearly all training sentences",
            config=Config,
            headline={"greedy_exact_match_heldout": ("greedy, held-out lengths", "{:.1%}"),
                      "beam_exact_match_heldout": ("beam, held-out lengths", "{:.1%}"),
                      "greedy_exact_match_untrained_lengths": ("never-trained lengths", "{:.1%}")},
            # quick: a tiny model, and a held-out gap of one length (7 words after training on ≤ 6)
            quick={"train_max_len": 6, "test_max_len": 7, "words": 10, "pool": 4000, "test_per_length": 200,
                   "d_model": 32, "n_head": 2, "d_ff": 64,
                   "train.steps": 400, "train.warmup": 50, "train.lr": 4e-3})
def transformer_translate(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if cfg.test_max_len <= cfg.train_max_len:
        raise ValueError(f"test_max_len {cfg.test_max_len} must exceed train_max_len {cfg.train_max_len}")
    g = torch.Generator().manual_seed(cfg.seed)
    dictionary = [PAD, BOS, EOS] + (torch.randperm(cfg.words, generator=g) + FIRST_WORD).tolist()
    n_long = round(cfg.pool * cfg.long_fraction)
    long_lengths = (cfg.train_max_len + 1, cfg.test_max_len)
    pool = (sample_sentences(cfg.pool - n_long, (1, cfg.train_max_len), cfg.words, g)
            + sample_sentences(n_long, long_lengths, cfg.words, g))
    seen = set(pool)
    test = {m: [s for s in sample_sentences(2 * cfg.test_per_length, (m, m), cfg.words, g) if s not in seen]
            [:cfg.test_per_length] for m in range(1, cfg.test_max_len + cfg.probe_lengths + 1)}
    test = {m: sents for m, sents in test.items() if sents}  # short lengths may all be in the pool
    missing = [m for m in range(long_lengths[0], cfg.test_max_len + cfg.probe_lengths + 1) if m not in test]
    if missing:
        raise ValueError(f"no unseen sentence of lengths {missing}: raise words or lower pool")
    test_long = [s for m in range(long_lengths[0], long_lengths[1] + 1) for s in test[m]]

    torch.manual_seed(cfg.seed)
    vocab = FIRST_WORD + cfg.words
    model = Transformer(TransformerConfig(
        src_vocab=vocab, tgt_vocab=vocab, d_model=cfg.d_model, n_head=cfg.n_head, n_encoder_layer=cfg.layers,
        n_decoder_layer=cfg.layers, d_ff=cfg.d_ff, dropout=cfg.dropout,
        max_len=cfg.test_max_len + cfg.probe_lengths + 2,
        pad_id=PAD)).to(run.device)

    def get_batch(step: int, micro: int) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(0, len(pool), (cfg.batch,),
                            generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
        return tuple(t.to(run.device) for t in to_batch([pool[i] for i in idx.tolist()], dictionary))

    def loss_fn(m: Transformer, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return m.loss(*batch, smoothing=cfg.smoothing)

    result = train(model, loss_fn, get_batch, cfg.train, run=run,
                   checkpoint_dir=run.checkpoint_dir, resume=run.resuming)
    run.print(f"trained {result.step} steps in {result.seconds:.1f} s, final loss {result.losses[-1]:.3f}")

    t0 = time.perf_counter()
    with torch.no_grad():
        greedy_by_len = {m: exact_match(model, test[m], dictionary, 0, cfg.length_penalty) for m in test}
        beam_long = exact_match(model, test_long, dictionary, cfg.beam_size, cfg.length_penalty)
    decode_s = time.perf_counter() - t0
    acc = {m: sum(h) / len(h) for m, h in greedy_by_len.items()}
    greedy_long = [h for m in range(long_lengths[0], long_lengths[1] + 1) for h in greedy_by_len[m]]
    greedy_acc, beam_acc = sum(greedy_long) / len(greedy_long), sum(beam_long) / len(beam_long)
    short_hits = [h for m in range(1, cfg.train_max_len + 1) for h in greedy_by_len.get(m, [])]
    short_acc = sum(short_hits) / len(short_hits)
    probe_hits = [h for m in range(cfg.test_max_len + 1, cfg.test_max_len + cfg.probe_lengths + 1)
                  for h in greedy_by_len[m]]
    probe_acc = sum(probe_hits) / len(probe_hits) if probe_hits else float("nan")
    # beam accuracy per held-out length (beam_long is ordered by length)
    beam_by_len, i = {}, 0
    for m in range(long_lengths[0], long_lengths[1] + 1):
        beam_by_len[m] = sum(beam_long[i:i + len(test[m])]) / len(test[m])
        i += len(test[m])
    for m in sorted(acc):
        run.log(length=m, greedy_exact_match=acc[m], beam_exact_match=beam_by_len.get(m))
    run.print(f"training lengths 1..{cfg.train_max_len} (+{cfg.long_fraction:.0%} of {long_lengths[0]}.."
              f"{long_lengths[1]}); held-out lengths {long_lengths[0]}..{long_lengths[1]}, "
              f"{len(test_long)} sentences")
    run.print(f"exact match: greedy {greedy_acc:.3f}, beam({cfg.beam_size}) {beam_acc:.3f} on held-out; "
              f"greedy {short_acc:.3f} on fresh in-range lengths; decoding {decode_s:.1f} s")
    run.print(f"diagnostic, not part of the claim: greedy {probe_acc:.3f} on lengths {cfg.test_max_len + 1}.."
              f"{cfg.test_max_len + cfg.probe_lengths}, absent from training (absolute positions)")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(result.losses)
    ax1.set(xlabel="step", ylabel="label-smoothed cross-entropy", title="training loss", yscale="log")
    ax2.plot(sorted(acc), [acc[m] for m in sorted(acc)], "o-", label="greedy")
    ax2.plot(sorted(beam_by_len), [beam_by_len[m] for m in sorted(beam_by_len)], "s--", label=f"beam {cfg.beam_size}")
    ax2.axvspan(cfg.train_max_len + 0.5, cfg.test_max_len + 0.5, alpha=0.15, label="held-out lengths")
    if cfg.probe_lengths:
        ax2.axvspan(cfg.test_max_len + 0.5, cfg.test_max_len + cfg.probe_lengths + 0.5, alpha=0.15,
                    color="red", label="never trained on")
    ax2.axhline(cfg.min_exact_match, color="gray", lw=0.8)
    ax2.set(xlabel="source length (words)", ylabel="exact match", title="accuracy vs input length", ylim=(0, 1.02))
    ax2.legend()
    run.savefig(fig, "loss_and_accuracy")

    held = greedy_acc >= cfg.min_exact_match and beam_acc >= cfg.min_exact_match
    return Verdict(held=held, metrics={
        "greedy_exact_match_heldout": greedy_acc, "beam_exact_match_heldout": beam_acc,
        "greedy_exact_match_in_range": short_acc, "greedy_exact_match_untrained_lengths": probe_acc,
        "heldout_sentences": len(test_long),
        "heldout_lengths": f"{long_lengths[0]}..{long_lengths[1]}", "train_max_len": cfg.train_max_len,
        "long_fraction": cfg.long_fraction, "final_loss": result.losses[-1], "train_s": result.seconds,
        "decode_s": decode_s}, notes=f"greedy/beam exact match on {len(test_long)} fresh sentences of lengths "
                                     f"{long_lengths[0]}..{long_lengths[1]}; training mostly ≤ {cfg.train_max_len}")
