"""A trained language model in a run folder, as `deepatlas sample RUN_DIR` reads it.

    RUN_DIR/model/config.json, model.safetensors     the GPT in Hugging Face's GPT-2 layout
    RUN_DIR/tokenizer.json                           {"kind": "char", "chars": [...]}
                                                     or {"kind": "bpe", "dir": "bpe"} (vocab.json
                                                     + merges.txt in RUN_DIR/bpe)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from deepatlas.models.gpt import GPT, from_pretrained_hf, save_pretrained_hf

TOKENIZER_FILE = "tokenizer.json"
MODEL_DIR = "model"


@dataclass
class LanguageModel:
    model: GPT
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    kind: str


def save_char_tokenizer(directory: Path, chars: list[str]) -> None:
    (Path(directory) / TOKENIZER_FILE).write_text(json.dumps({"kind": "char", "chars": list(chars)}))


def save_bpe_tokenizer(directory: Path, bpe) -> None:
    bpe.save(Path(directory) / "bpe")
    (Path(directory) / TOKENIZER_FILE).write_text(json.dumps({"kind": "bpe", "dir": "bpe"}))


def save_model(directory: Path, model: GPT) -> Path:
    return save_pretrained_hf(model, Path(directory) / MODEL_DIR)


def load_language_model(directory: str | Path) -> LanguageModel:
    """The GPT and its tokenizer saved in a run folder; FileNotFoundError says what is missing."""
    directory = Path(directory)
    tok_path = directory / TOKENIZER_FILE
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a folder; give a run folder of the L2 "
                                f"experiment, e.g. runs/gpt-pretrain/<time>")
    if not tok_path.is_file() or not (directory / MODEL_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(f"{directory} holds no trained model ({MODEL_DIR}/model.safetensors "
                                f"and {TOKENIZER_FILE}); run `deepatlas run gpt-pretrain` first")
    try:
        spec = json.loads(tok_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{tok_path} is not valid JSON ({err}); the run folder is damaged") from None
    try:
        model = from_pretrained_hf(directory / MODEL_DIR).eval()
    except Exception as err:  # safetensors' SafetensorError, a bad config.json, missing tensors
        raise ValueError(f"{directory / MODEL_DIR} could not be loaded ({type(err).__name__}: {err}); "
                         "the saved model is damaged or incomplete") from None
    if spec["kind"] == "char":
        from deepatlas.text.char import CharTokenizer

        tok = CharTokenizer(spec["chars"])

        def encode(text: str) -> list[int]:
            try:
                return tok.encode(text)
            except KeyError as err:  # CharTokenizer names the character; callers expect ValueError
                raise ValueError(err.args[0]) from None
        return LanguageModel(model, encode, tok.decode, "char")
    if spec["kind"] == "bpe":
        from deepatlas.text.bpe import ByteLevelBPE

        bpe = ByteLevelBPE.load(directory / spec["dir"])
        return LanguageModel(model, bpe.encode, bpe.decode, "bpe")
    raise ValueError(f"{tok_path}: unknown tokenizer kind {spec['kind']!r}; valid: char, bpe")
