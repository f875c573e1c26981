"""Spoken sentences synthesised with espeak-ng (Debian `espeak-ng`), for training a recogniser from scratch.

Sentences follow one template over a 36-word vocabulary,
    "<verb> the <colour> <object> <preposition> <number>"     e.g. "open the red box near seven",
so 15 360 sentences exist; a test sentence never occurs in training. Each utterance gets a voice
(an espeak-ng language voice with a variant: male/female timbres), a speed (words per minute) and a
pitch drawn at random; one voice is held out of training altogether. espeak-ng writes 22 050 Hz
WAV, which our reader and resampler (deepatlas.audio.wav) bring to 16 kHz.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepatlas.audio.wav import read_audio

VERBS = ("open", "close", "move", "find", "take", "drop", "paint", "show")
COLOURS = ("red", "green", "blue", "white", "black", "yellow")
OBJECTS = ("box", "cup", "door", "lamp", "chair", "book", "key", "ball")
PREPOSITIONS = ("near", "under", "behind", "beside")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_VOICES = ("en-us", "en-us+m3", "en-us+f2", "en-gb", "en-gb+m5", "en+f4", "en-gb-x-rp+m2", "en-029+f1")
HELD_OUT_VOICE = "en-gb-scotland+f3"
ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"      # symbol i + 1 (0 is CTC's blank)


def espeak() -> str | None:
    return shutil.which("espeak-ng")


def sentence(index: int) -> str:
    """The index-th of the 15 360 sentences (mixed-radix over the five slots)."""
    out = []
    for words in (VERBS, COLOURS, OBJECTS, PREPOSITIONS, NUMBERS):
        index, k = divmod(index, len(words))
        out.append(words[k])
    verb, colour, obj, prep, number = out
    return f"{verb} the {colour} {obj} {prep} {number}"


N_SENTENCES = len(VERBS) * len(COLOURS) * len(OBJECTS) * len(PREPOSITIONS) * len(NUMBERS)


def encode_text(text: str) -> list[int]:
    bad = sorted(set(text) - set(ALPHABET))
    if bad:
        raise ValueError(f"characters {bad} are outside the alphabet {ALPHABET!r}")
    return [ALPHABET.index(c) + 1 for c in text]


def decode_text(ids: list[int]) -> str:
    return "".join(ALPHABET[i - 1] for i in ids if 0 < i <= len(ALPHABET))


@dataclass
class Utterance:
    text: str
    voice: str
    speed: int
    pitch: int
    audio: np.ndarray          # 16 kHz mono float32


def synthesise(specs: list[tuple[str, str, int, int]], parallel: int = 4) -> list[np.ndarray]:
    """[(text, voice, speed wpm, pitch 0-99)] -> 16 kHz audio each, `parallel` espeak-ng processes at a time."""
    exe = espeak()
    if exe is None:
        raise FileNotFoundError("espeak-ng not installed: apt-get install espeak-ng")
    out: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as tmp:
        for start in range(0, len(specs), parallel):
            procs = []
            for i, (text, voice, speed, pitch) in enumerate(specs[start:start + parallel]):
                path = Path(tmp) / f"{start + i}.wav"
                procs.append((path, subprocess.Popen([exe, "-v", voice, "-s", str(speed), "-p", str(pitch),
                                                      "-w", str(path), text], stderr=subprocess.PIPE)))
            for path, proc in procs:
                _, err = proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {err.decode().strip()}")
                out.append(read_audio(path, 16000))
    return out


def make_split(sentence_ids: list[int], voices: tuple[str, ...], seed: int) -> list[Utterance]:
    """One utterance per sentence id, each with a random voice from `voices`, speed and pitch."""
    rng = np.random.default_rng(seed)
    specs = [(sentence(i), voices[int(rng.integers(len(voices)))], int(rng.integers(140, 200)),
              int(rng.integers(25, 75))) for i in sentence_ids]
    return [Utterance(*spec, audio) for spec, audio in zip(specs, synthesise(specs))]


def sentence_splits(n_train: int, n_test: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Disjoint random sentence ids: the test sentences never occur in training."""
    if n_train + n_test > N_SENTENCES:
        raise ValueError(f"{n_train} + {n_test} sentences requested; only {N_SENTENCES} exist")
    perm = np.random.default_rng(seed).permutation(N_SENTENCES)
    return perm[:n_train].tolist(), perm[n_train:n_train + n_test].tolist()
