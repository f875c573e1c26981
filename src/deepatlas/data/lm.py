"""Language-modelling data: a token-id stream, a fixed train/val split, and reproducible batches.

A model learns p(x_t | x_<t); a batch is B windows of T+1 consecutive ids from the stream,
inputs = the first T, targets = the same window shifted by one:

    x = ids[o : o + T]        y = ids[o + 1 : o + T + 1]        (B, T) each

`get_batch(split, step, micro, ...)` draws the offsets o from a generator seeded by exactly
(seed, split, step, micro), so batch k is the same whether training runs straight through or
resumes from a checkpoint at step k (deepatlas.core.train's exact-resume contract). The stream
can be any 1-D LongTensor: characters (CharVocab below), bytes, or BPE ids.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Iterable

import torch

SPLITS = ("train", "val")


class CharVocab:
    """Character-level vocabulary: itos[i] is the i-th distinct character (sorted), stoi inverts it."""

    def __init__(self, chars: Iterable[str]) -> None:
        self.itos: list[str] = sorted(set(chars))
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.itos)}

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls(text)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> torch.Tensor:
        """str -> LongTensor (len(text),) of ids; an unseen character is an error naming it."""
        try:
            return torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary of {len(self)} "
                             f"characters ({''.join(self.itos)[:80]!r}...)") from None

    def decode(self, ids: torch.Tensor | Iterable[int]) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < len(self)]
        if bad:
            raise ValueError(f"ids {bad[:5]} out of range; valid: 0..{len(self) - 1}")
        return "".join(self.itos[i] for i in ids)


def batch_seed(seed: int, split: str, step: int, micro: int) -> int:
    """A 63-bit seed determined by (seed, split, step, micro) alone — no global RNG state."""
    key = f"{seed}/{split}/{step}/{micro}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


class LMDataset:
    """A 1-D id stream split into train (first 1 - val_fraction) and val (the rest, at the end)."""

    def __init__(self, ids: torch.Tensor, val_fraction: float = 0.1) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
            raise ValueError(f"ids must be a 1-D LongTensor, got {type(ids).__name__} "
                             f"{tuple(getattr(ids, 'shape', ()))}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction {val_fraction}; valid: strictly between 0 and 1")
        ids = ids.long()
        n_val = int(len(ids) * val_fraction)
        # the split is by position, not at random: val text never overlaps a train window
        self.data = {"train": ids[:len(ids) - n_val], "val": ids[len(ids) - n_val:]}

    def split(self, split: str) -> torch.Tensor:
        if split not in SPLITS:
            raise ValueError(f"split {split!r}; valid: {', '.join(SPLITS)}")
        return self.data[split]

    def get_batch(self, split: str, step: int, micro: int = 0, batch_size: int = 16,
                  block_size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) LongTensors (batch_size, block_size); y is x shifted one position left."""
        data = self.split(split)
        if len(data) < block_size + 1:
            raise ValueError(f"{split} split has {len(data)} ids; block_size {block_size} needs at "
                             f"least {block_size + 1}")
        gen = torch.Generator().manual_seed(batch_seed(seed, split, step, micro))
        offsets = torch.randint(0, len(data) - block_size, (batch_size,), generator=gen)  # (B,)
        index = offsets[:, None] + torch.arange(block_size + 1)  # (B, T + 1)
        window = data[index]
        return window[:, :-1], window[:, 1:]

    def batch_fn(self, split: str, batch_size: int, block_size: int, seed: int = 0
                 ) -> Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]:
        """get_batch(step, micro) for deepatlas.core.train (deterministic in its arguments)."""
        return lambda step, micro: self.get_batch(split, step, micro, batch_size, block_size, seed)


def char_lm_dataset(text: str, val_fraction: float = 0.1) -> tuple[CharVocab, LMDataset]:
    """A character vocabulary of `text` and its id stream split into train / val."""
    vocab = CharVocab.from_text(text)
    return vocab, LMDataset(vocab.encode(text), val_fraction)
