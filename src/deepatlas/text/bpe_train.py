"""Learning BPE merges (Sennrich et al. 2016, Algorithm 1), step for step as HF `tokenizers`.

    repeat until the vocabulary has `vocab_size` entries:
        (a, b) = the most frequent adjacent pair of symbols, counted over all words
                 weighted by how often each word occurs
        add the symbol ab to the vocabulary and replace every (a, b) by ab

Counting all pairs again after every merge would cost O(corpus) per merge. Instead the counts
are updated incrementally: merging (a, b) in a word only changes the pairs around each
occurrence, (x, a) -> (x, ab) and (b, y) -> (ab, y), and only the words that contain (a, b)
(an inverted index pair -> word positions) need to be visited.

Exactly the choices of HF `tokenizers` BpeTrainer (tokenizers/src/models/bpe/trainer.rs), so that
the merges and ids come out identical (tests/text/test_bpe_train.py compares them):
* ids: special tokens first, then the alphabet sorted by code point, then merges in order;
* the most frequent pair wins, ties go to the pair with the smallest (id_a, id_b);
* the queue is a max-heap with lazy updates: a popped entry whose count went stale is pushed
  back with its current count; an entry carries the word positions known when it was pushed,
  and the count of the merged pair itself is not reset (HF's quirks, kept on purpose);
* a pair merged twice (possible when a token string can be formed in two ways) keeps only its
  last rank, as HF's merges HashMap does.
"""
from __future__ import annotations

import heapq
import itertools
from collections import Counter
from typing import Iterable, Sequence

from deepatlas.text.pretokenize import PreTokenizer, bytes_to_unicode

Pair = tuple[int, int]


def count_words(texts: Iterable[str], pre: PreTokenizer, split_specials: bool = True) -> Counter[str]:
    """Byte-level words (each byte shown as its printable character) -> occurrence count.

    split_specials=False counts special tokens in the text as ordinary text, which is what HF
    `tokenizers` training does (its trainer never looks for added tokens)."""
    table = bytes_to_unicode()
    raw: Counter[str] = Counter()
    for text in texts:
        if not split_specials:
            raw.update(pre.words(text))
            continue
        for segment, is_special in pre.split_specials(text):
            if not is_special:
                raw.update(pre.words(segment))
    counts: Counter[str] = Counter()
    for word, n in raw.items():
        counts["".join(table[b] for b in word.encode("utf-8"))] += n
    return counts


def _merge_in_word(symbols: list[int], a: int, b: int, new: int) -> list[tuple[Pair, int]]:
    """Replace each (a, b) left to right by `new` in place; return the pair-count changes."""
    changes: list[tuple[Pair, int]] = []
    i = 0
    while i < len(symbols):
        if symbols[i] == a and i + 1 < len(symbols) and symbols[i + 1] == b:
            if i > 0:  # (x, a) -> (x, ab)
                changes.append(((symbols[i - 1], a), -1))
                changes.append(((symbols[i - 1], new), 1))
            symbols[i:i + 2] = [new]
            if i < len(symbols) - 1:  # (b, y) -> (ab, y)
                changes.append(((b, symbols[i + 1]), -1))
                changes.append(((new, symbols[i + 1]), 1))
        i += 1
    return changes


def train_bpe(word_counts: dict[str, int], vocab_size: int, special_tokens: Sequence[str] = (),
              initial_alphabet: Iterable[str] = (), min_frequency: int = 0
              ) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn (vocab, merges) from word counts, e.g. `count_words(texts, PreTokenizer())`."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    id_to_token: list[str] = []
    token_to_id: dict[str, int] = {}

    def add(token: str) -> int:
        if token not in token_to_id:
            token_to_id[token] = len(id_to_token)
            id_to_token.append(token)
        return token_to_id[token]

    for token in special_tokens:
        add(token)
    alphabet = {c for word in word_counts for c in word} | set(initial_alphabet)
    for c in sorted(alphabet):  # sorted by code point, as HF does "for determinism"
        add(c)

    words = [[token_to_id[c] for c in word] for word in word_counts]
    counts = list(word_counts.values())

    # pair counts c(a, b) = Σ_words count(word) · #occurrences of (a, b) in word
    pair_counts: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}
    for w, (symbols, n) in enumerate(zip(words, counts)):
        for pair in zip(symbols, symbols[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + n
            where.setdefault(pair, set()).add(w)

    # max-heap on count, ties by the smallest pair: heapq is a min-heap on (-count, a, b)
    tiebreak = itertools.count()
    heap = [(-pair_counts[p], p[0], p[1], next(tiebreak), pos) for p, pos in where.items()
            if pair_counts[p] > 0]
    heapq.heapify(heap)

    merges: list[Pair] = []
    while len(token_to_id) < vocab_size and heap:
        neg_count, a, b, _, pos = heapq.heappop(heap)
        current = pair_counts[(a, b)]
        if -neg_count != current:  # stale: push back with its true count
            heapq.heappush(heap, (-current, a, b, next(tiebreak), pos))
            continue
        if current < 1 or min_frequency > current:
            break
        new = add(id_to_token[a] + id_to_token[b])
        merges.append((a, b))

        updated: dict[Pair, set[int]] = {}
        for w in pos:
            for pair, change in _merge_in_word(words[w], a, b, new):
                pair_counts[pair] = pair_counts.get(pair, 0) + change * counts[w]
                if change > 0:
                    updated.setdefault(pair, set()).add(w)
        for pair, positions in updated.items():
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], pair[0], pair[1], next(tiebreak), positions))

    last_rank = {pair: rank for rank, pair in enumerate(merges)}  # a repeated pair keeps its last
    merge_tokens = [(id_to_token[a], id_to_token[b]) for rank, (a, b) in enumerate(merges)
                    if last_rank[(a, b)] == rank]
    return dict(token_to_id), merge_tokens
