"""M3: a CTC speech recogniser trained from scratch on synthesised speech reads held-out sentences.

Data (deepatlas.audio.speech_data): sentences "<verb> the <colour> <object> <preposition> <number>"
spoken by espeak-ng in 8 training voices at random speeds and pitches, brought to 16 kHz by our
resampler and to Whisper-style log-mel features by our front end. The test sentences never occur
in training; a second test set is spoken by a ninth voice that training never hears.

Model (deepatlas.models.ctc): two convolutions (20 ms frames), a small pre-norm Transformer
encoder, per-frame letter probabilities; trained with the CTC loss (ours = F.ctc_loss; the fused
kernel trains), decoded greedily and with prefix beam search.

Trivial baseline: the sentence made of the most frequent training word in each slot, the best a
model that ignores the audio can do on average. Claim held when the greedy CER on held-out
sentences is at most `max_cer_ratio` of the baseline's, and on the held-out voice at most
`max_voice_ratio` of it.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train


@dataclass
class Config:
    train_sentences: int = 600
    test_sentences: int = 100
    d_model: int = 128
    layers: int = 3
    heads: int = 4
    dropout: float = 0.1
    batch: int = 24
    beam: int = 8
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=500, lr=2e-3, warmup=50, schedule="cosine", min_lr=1e-4, weight_decay=0.01, clip=1.0,
        checkpoint_every=100, log_every=25))
    max_cer_ratio: float = 0.5
    max_voice_ratio: float = 0.75
    seed: int = 0


def _features(sentence_ids: list[int], voices: tuple[str, ...], seed: int) -> tuple[list[torch.Tensor], list[str], list[str]]:
    """Log-mel features of freshly synthesised utterances, cached by their spec (espeak-ng is slow)."""
    from deepatlas.audio.features import log_mel
    from deepatlas.audio.speech_data import make_split
    from deepatlas.data.cache import cache_dir

    key = hashlib.sha256(json.dumps([sentence_ids, voices, seed, 1]).encode()).hexdigest()[:16]
    path = cache_dir("speech", f"{key}.pt")
    if path.exists():
        blob = torch.load(path)
        return [f.float() for f in blob["feats"]], blob["texts"], blob["voices"]
    utts = make_split(sentence_ids, voices, seed)
    feats = [log_mel(u.audio, pad_to=None) for u in utts]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"feats": [f.half() for f in feats], "texts": [u.text for u in utts],
                "voices": [u.voice for u in utts]}, tmp)
    tmp.replace(path)
    return feats, [u.text for u in utts], [u.voice for u in utts]


def _collate(feats: list[torch.Tensor], texts: list[str]):
    """-> mel (B, 80, T) zero-padded, frames (B,), targets (B, L) padded, target lengths (B,)."""
    from deepatlas.audio.speech_data import encode_text

    T = max(f.size(1) for f in feats)
    mel = torch.zeros(len(feats), feats[0].size(0), T)
    for i, f in enumerate(feats):
        mel[i, :, :f.size(1)] = f
    ids = [encode_text(t) for t in texts]
    targets = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for i, x in enumerate(ids):
        targets[i, :len(x)] = torch.tensor(x)
    return mel, torch.tensor([f.size(1) for f in feats]), targets, torch.tensor([len(x) for x in ids])


def _transcribe(model, feats, beam: int) -> tuple[list[str], list[str]]:
    from deepatlas.audio.speech_data import decode_text
    from deepatlas.models.ctc import greedy_decode, prefix_beam_decode

    greedy, beamed = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(feats), 32):
            mel, frames, _, _ = _collate(feats[start:start + 32], ["a"] * len(feats[start:start + 32]))
            lp, lengths = model(mel, frames)                                      # (T', B, C)
            greedy += [decode_text(h) for h in greedy_decode(lp, lengths)]
            if beam:
                beamed += [decode_text(prefix_beam_decode(lp[:n, b], beam)) for b, n in enumerate(lengths.tolist())]
    return greedy, beamed


@experiment("M3", "ctc-espeak",
            claim="a CTC recogniser trained from scratch on espeak-ng speech (8 voices) transcribes held-out "
                  "sentences at a character error rate ≤ half that of the best audio-blind guess, and a voice "
                  "never heard in training at ≤ 3/4 of it",
            config=Config, quick={"train_sentences": 200, "test_sentences": 30, "d_model": 96, "layers": 2,
                                  "dropout": 0.0, "batch": 16, "beam": 4, "train.steps": 280, "train.lr": 3e-3,
                                  "train.warmup": 30},
            one_thread=True,
            headline={"cer_greedy": ("CER, held-out sentences", "{:.1%}"),
                      "cer_voice": ("CER, held-out voice", "{:.1%}"), "cer_baseline": ("audio-blind guess", "{:.1%}")})
def ctc_espeak(cfg: Config, run: Run) -> Verdict:
    from deepatlas.audio.scoring import error_rate
    from deepatlas.audio.speech_data import ALPHABET, HELD_OUT_VOICE, TRAIN_VOICES, espeak, sentence_splits
    from deepatlas.models.ctc import CTCRecogniser, ctc_loss

    if espeak() is None:
        return Verdict(False, {}, notes="not run: espeak-ng not installed (apt-get install espeak-ng)")
    train_ids, test_ids = sentence_splits(cfg.train_sentences, cfg.test_sentences, cfg.seed)
    feats, texts, _ = _features(train_ids, TRAIN_VOICES, cfg.seed)
    test_feats, test_texts, _ = _features(test_ids, TRAIN_VOICES, cfg.seed + 1)
    voice_feats, voice_texts, _ = _features(test_ids, (HELD_OUT_VOICE,), cfg.seed + 2)
    seconds = sum(f.size(1) for f in feats) / 100
    run.print(f"{len(feats)} training utterances ({seconds / 60:.1f} min of speech), "
              f"{len(test_feats)} + {len(voice_feats)} test")

    torch.manual_seed(cfg.seed)
    model = CTCRecogniser(len(ALPHABET), d_model=cfg.d_model, n_head=cfg.heads, layers=cfg.layers, dropout=cfg.dropout)

    def get_batch(step: int, micro: int):
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = torch.randint(len(feats), (cfg.batch,), generator=g).tolist()
        return _collate([feats[i] for i in idx], [texts[i] for i in idx])

    def loss_fn(m, batch):
        mel, frames, targets, target_lengths = batch
        lp, lengths = m(mel, frames)
        return ctc_loss(lp, targets, lengths, target_lengths, fast=True)

    result = train(model, loss_fn, get_batch, cfg.train, run=run, checkpoint_dir=run.checkpoint_dir,
                   resume=run.resuming)

    greedy, beamed = _transcribe(model, test_feats, cfg.beam)
    voice_greedy, _ = _transcribe(model, voice_feats, 0)
    # audio-blind: the most frequent training word in each of the six slots
    slots = list(zip(*[t.split() for t in texts]))
    blind = " ".join(Counter(s).most_common(1)[0][0] for s in slots)
    m = {"train_utterances": len(feats), "train_minutes": seconds / 60, "final_loss": result.losses[-1],
         "cer_greedy": error_rate(test_texts, greedy, "char"), "wer_greedy": error_rate(test_texts, greedy),
         "cer_voice": error_rate(voice_texts, voice_greedy, "char"), "wer_voice": error_rate(voice_texts, voice_greedy),
         "cer_baseline": error_rate(test_texts, [blind] * len(test_texts), "char"),
         "wer_baseline": error_rate(test_texts, [blind] * len(test_texts)),
         "cer_empty": 1.0}
    if beamed:
        m.update(cer_beam=error_rate(test_texts, beamed, "char"), wer_beam=error_rate(test_texts, beamed))
    for i in range(min(3, len(test_texts))):
        run.print(f"  ref: {test_texts[i]}\n  hyp: {greedy[i]}" + (f"\n beam: {beamed[i]}" if beamed else "")
                  + f"\n  held-out voice: {voice_greedy[i]}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(result.losses)
    axes[0].set(xlabel="step", ylabel="CTC loss (nats / target letter)", yscale="log", title="training")
    keys = [("cer_greedy", "held-out sentences"), ("cer_beam", f"beam {cfg.beam}"), ("cer_voice", "held-out voice"),
            ("cer_baseline", "audio-blind guess")]
    keys = [(k, n) for k, n in keys if k in m]
    axes[1].bar([n for _, n in keys], [m[k] for k, _ in keys], color=["C0", "C1", "C2", "gray"][:len(keys)])
    axes[1].set(ylabel="character error rate", title="test CER")
    axes[1].tick_params(axis="x", labelsize=8)
    run.savefig(fig, "ctc")

    ratio, voice_ratio = m["cer_greedy"] / m["cer_baseline"], m["cer_voice"] / m["cer_baseline"]
    m.update(cer_ratio=ratio, voice_ratio=voice_ratio)
    held = ratio <= cfg.max_cer_ratio and voice_ratio <= cfg.max_voice_ratio
    return Verdict(held, m, notes=f"CER {m['cer_greedy']:.1%} (held-out sentences), {m['cer_voice']:.1%} "
                   f"(held-out voice) vs {m['cer_baseline']:.1%} audio-blind: ratios {ratio:.2f} "
                   f"(bar {cfg.max_cer_ratio}), {voice_ratio:.2f} (bar {cfg.max_voice_ratio})")
