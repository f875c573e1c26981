"""The tokenizer stored in a GGUF file's metadata, built on deepatlas.text.bpe.ByteLevelBPE.

llama.cpp stores a GPT-2-style byte-level BPE as
    tokenizer.ggml.model = "gpt2", tokenizer.ggml.pre = the pre-tokeniser's name (e.g. "smollm"),
    tokenizer.ggml.tokens[i] = token string of id i, tokenizer.ggml.merges = ["a b", ...] (rank order),
    tokenizer.ggml.token_type[i] ∈ {1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte},
    tokenizer.ggml.{bos,eos,unknown,padding}_token_id.
Control and user-defined tokens (<|im_start|>, <|endoftext|>, ...) are special: matched whole in
the text before BPE runs, never split.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepatlas.text.bpe import ByteLevelBPE

CONTROL, USER_DEFINED = 3, 4


@dataclass
class GGUFTokenizer:
    bpe: ByteLevelBPE
    bos_id: int | None
    eos_id: int | None
    special_tokens: list[str]

    def encode(self, text: str) -> list[int]:
        return self.bpe.encode(text)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.bpe.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_id(self, token: str) -> int:
        if token not in self.bpe.vocab:
            raise KeyError(f"token {token!r} is not in this tokenizer's vocab")
        return self.bpe.vocab[token]

    def __len__(self) -> int:
        return len(self.bpe)


def tokenizer_from_gguf(meta: dict[str, Any]) -> GGUFTokenizer:
    """Build the byte-level BPE tokenizer described by GGUF metadata."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"tokenizer.ggml.model is {kind!r}; only byte-level BPE ('gpt2') is supported")
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta.get("tokenizer.ggml.token_type", [1] * len(tokens))
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    specials = [t for t, kind in zip(tokens, types) if kind in (CONTROL, USER_DEFINED)]
    bpe = ByteLevelBPE.from_vocab_merges(vocab, merges, specials,
                                         pretokenizer=meta.get("tokenizer.ggml.pre", "gpt2"))
    return GGUFTokenizer(bpe, meta.get("tokenizer.ggml.bos_token_id"), meta.get("tokenizer.ggml.eos_token_id"),
                         specials)
