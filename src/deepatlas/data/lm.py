"""Language-modelling data: a token-id stream, a fixed train/val split, and reproducible batches.

A model learns p(x_t | x_<t); a batch is B windows of T+1 consecutive ids from the stream,
inputs = the first T, targets = the same window shifted by one:

    x = ids[o : o + T]        y = ids[o + 1 : o + T + 1]        (B, T) each

`get_batch(split, step, micro, ...)` draws the offsets o from a generator seeded by exactly
(seed, split, step, micro), so batch k is the same whether training runs straight through or
resumes from a checkpoint at step k (deepatlas.core.train's exact-resume contract). The stream
can be any 1-D LongTensor: characters (deepatlas.text.char.CharTokenizer, see char_lm_dataset),
bytes, or BPE ids.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import torch

from deepatlas.text.char import CharTokenizer

SPLITS = ("train", "val")


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


def char_lm_dataset(text: str, val_fraction: float = 0.1) -> tuple[CharTokenizer, LMDataset]:
    """A character tokenizer of `text` (vocabulary = its distinct characters) and the id stream
    of `text` split into train / val."""
    tokenizer = CharTokenizer.from_text(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)  # (len(text),)
    return tokenizer, LMDataset(ids, val_fraction)
