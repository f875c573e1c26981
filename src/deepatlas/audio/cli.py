"""`deepatlas transcribe FILE.wav [--beam 5] [--timestamps]`: speech to text with Whisper tiny.en.

Any WAV (PCM or float, any rate, stereo or mono) is read, resampled to 16 kHz and cut into 30 s
windows; their texts are printed joined. A missing, empty or non-audio file, or absent weights,
end in a one-line error and exit status 2.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("transcribe", help="speech to text with Whisper tiny.en (WAV files)")
    p.add_argument("files", nargs="+", help="WAV files")
    p.add_argument("--beam", type=int, default=1, help="beam search with this many beams (1 = greedy)")
    p.add_argument("--timestamps", action="store_true", help="print Whisper's <|seconds|> timestamps")
    p.set_defaults(func=run_transcribe)


def run_transcribe(args: argparse.Namespace) -> int:
    from deepatlas.audio.ct2 import CT2Error
    from deepatlas.audio.transcribe import Transcriber
    from deepatlas.audio.wav import WavError, read_audio

    try:
        if args.beam < 1:
            raise ValueError(f"--beam {args.beam} must be ≥ 1 (1 = greedy)")
        audio = [read_audio(f) for f in args.files]     # every file checked before the model loads
        tr = Transcriber.load()
    except (WavError, CT2Error, FileNotFoundError, ValueError) as err:
        print(f"deepatlas transcribe: {err}", file=sys.stderr)
        return 2
    for name, samples in zip(args.files, audio):
        text = tr.transcribe(samples, beams=args.beam, timestamps=args.timestamps)
        print(f"{name}: {text}" if len(args.files) > 1 else text, flush=True)
    return 0
