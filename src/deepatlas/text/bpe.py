"""Byte-level BPE tokenizer (Sennrich et al. 2016; GPT-2, Radford et al. 2019).

encode: special tokens cut out whole -> regex pieces -> UTF-8 bytes as printable characters ->
        within each piece, repeatedly merge the adjacent pair with the lowest merge rank
        (the order the merges were learned) until no learned pair is left -> ids
decode: ids -> token strings -> bytes -> UTF-8 text. Every byte is a token, so
        decode(encode(s)) == s for any string.

The vocab.json + merges.txt files are GPT-2's format, the one HF `tokenizers` writes as well.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from deepatlas.text.bpe_train import count_words, train_bpe
from deepatlas.text.pretokenize import PreTokenizer, bytes_to_unicode, unicode_to_bytes

MERGES_HEADER = "#version: 0.2"
# GPT-2's document separator and the ChatML turn markers (SmolLM2-Instruct, Qwen)
CHAT_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


class ByteLevelBPE:
    """vocab: token string -> id; merges: (left, right) pairs, highest priority first."""

    def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]],
                 special_tokens: Sequence[str] = (), pretokenizer: str | Sequence[str] = "gpt2"):
        self.vocab = dict(vocab)
        for token in special_tokens:  # as HF: a special token missing from the vocab gets a new id
            if token not in self.vocab:
                self.vocab[token] = max(self.vocab.values(), default=-1) + 1
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.merges = [tuple(m) for m in merges]
        # rank(a, b) = position of the merge in the learned order; a repeated pair keeps its last
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        for a, b in self.merges:
            if a + b not in self.vocab:
                raise ValueError(f"merge ({a!r}, {b!r}) makes {a + b!r}, which is not in the vocab")
        self.special_tokens = list(special_tokens)
        self.special_ids = {self.vocab[t] for t in self.special_tokens}
        self.pre = PreTokenizer(pretokenizer, self.special_tokens)
        self._byte_char = bytes_to_unicode()
        self._char_byte = unicode_to_bytes()
        self._cache: dict[str, list[int]] = {}
        self._id_bytes: dict[int, bytes] | None = None

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_vocab_merges(cls, vocab: dict[str, int], merges: list[tuple[str, str]],
                          special_tokens: list[str], pretokenizer: str | Sequence[str] = "gpt2"
                          ) -> "ByteLevelBPE":
        """Build from a GPT-2-style vocab and merges (e.g. read from GGUF metadata)."""
        return cls(vocab, merges, special_tokens, pretokenizer)

    @classmethod
    def train(cls, texts: str | Iterable[str], vocab_size: int, special_tokens: Sequence[str] = (),
              pretokenizer: str | Sequence[str] = "gpt2", min_frequency: int = 0,
              split_specials: bool = True) -> "ByteLevelBPE":
        """Learn merges on `texts` until the vocab (specials + 256 bytes + merges) has vocab_size.

        Special tokens found in `texts` are cut out before counting (split_specials=True), so no
        merge learns pieces of "<|endoftext|>"; HF `tokenizers` trains on them as plain text, and
        split_specials=False reproduces that."""
        pre = PreTokenizer(pretokenizer, special_tokens)
        texts = [texts] if isinstance(texts, str) else texts
        word_counts = count_words(texts, pre, split_specials)
        vocab, merges = train_bpe(word_counts, vocab_size, special_tokens,
                                  initial_alphabet=bytes_to_unicode().values(),
                                  min_frequency=min_frequency)
        return cls(vocab, merges, special_tokens, pretokenizer)

    def save(self, directory: str | Path) -> None:
        """Write vocab.json and merges.txt (GPT-2 / HF format) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vocab.json").write_text(json.dumps(self.vocab, ensure_ascii=False), "utf-8")
        lines = [MERGES_HEADER] + [f"{a} {b}" for a, b in self.merges]
        (directory / "merges.txt").write_text("\n".join(lines) + "\n", "utf-8")

    @classmethod
    def load(cls, directory: str | Path, special_tokens: Sequence[str] = (),
             pretokenizer: str | Sequence[str] = "gpt2") -> "ByteLevelBPE":
        """Read vocab.json and merges.txt from `directory`."""
        directory = Path(directory)
        vocab = json.loads((directory / "vocab.json").read_text("utf-8"))
        merges = []
        for line in (directory / "merges.txt").read_text("utf-8").splitlines():
            if line.startswith("#version") or not line.strip():
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{directory / 'merges.txt'}: expected 'left right', got {line!r}")
            merges.append((parts[0], parts[1]))
        return cls(vocab, merges, special_tokens, pretokenizer)

    # ---- encoding ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.vocab)

    def _bpe(self, symbols: list[str]) -> list[str]:
        """Merge the lowest-ranked adjacent pair, every occurrence left to right, until none is left."""
        ranks, never = self.ranks, len(self.merges)  # every rank is < len(merges)
        while len(symbols) > 1:
            pairs = list(zip(symbols, symbols[1:]))
            pair_ranks = [ranks.get(p, never) for p in pairs]
            lowest = min(pair_ranks)
            if lowest == never:
                break
            a, b = pairs[pair_ranks.index(lowest)]
            merged, i, n = [], 0, len(symbols)
            while i < n:
                if i < n - 1 and symbols[i] == a and symbols[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def clear_cache(self) -> "ByteLevelBPE":
        """Forget the per-word cache (to time encoding cold); returns self."""
        self._cache.clear()
        return self

    def _encode_word(self, word: str) -> list[int]:
        ids = self._cache.get(word)
        if ids is None:
            symbols = self._bpe([self._byte_char[b] for b in word.encode("utf-8")])
            try:
                ids = [self.vocab[s] for s in symbols]
            except KeyError as err:
                raise KeyError(f"token {err.args[0]!r} (from {word!r}) is not in the vocab; a "
                               "byte-level vocab must hold all 256 byte characters") from None
            if len(self._cache) < 1_000_000:
                self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Text -> token ids."""
        ids: list[int] = []
        for segment, is_special in self.pre.split_specials(text):
            if is_special:
                ids.append(self.vocab[segment])
                continue
            for word in self.pre.words(segment):
                ids.extend(self._encode_word(word))
        return ids

    def tokens(self, text: str) -> list[str]:
        """Text -> token strings (in the printable byte alphabet, e.g. 'Ġthe')."""
        return [self.id_to_token[i] for i in self.encode(text)]

    def _token_bytes(self, token: str) -> bytes:
        # a character outside the 256-byte alphabet (an added token in a loaded vocab) is itself
        return b"".join(bytes([self._char_byte[c]]) if c in self._char_byte else c.encode("utf-8")
                        for c in token)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Token ids -> text; invalid UTF-8 (a cut multi-byte char) becomes U+FFFD as in HF."""
        if self._id_bytes is None:  # built on first use: id -> the bytes the token stands for
            self._id_bytes = {i: self._token_bytes(t) for i, t in self.id_to_token.items()}
        id_bytes, specials = self._id_bytes, self.special_ids
        out: list[str] = []
        run: list[bytes] = []  # bytes since the last special token, decoded together
        for i in ids:
            i = int(i)
            if i in specials:
                out.append(b"".join(run).decode("utf-8", errors="replace"))
                run = []
                if not skip_special_tokens:
                    out.append(self.id_to_token[i])
                continue
            chunk = id_bytes.get(i)
            if chunk is None:
                raise ValueError(f"id {i} is not in the vocab (valid: 0..{len(self.vocab) - 1})")
            run.append(chunk)
        out.append(b"".join(run).decode("utf-8", errors="replace"))
        return "".join(out)
