"""The Unigram language-model tokenizer (Kudo 2018), SentencePiece's default (map place L12).

A text x is segmented into pieces x = x_1 … x_M drawn independently from a vocabulary V:

    P(x) = Π_i p(x_i),      x* = argmax_{x ∈ S(X)} P(x)        (Kudo 2018, eqs. 1-2)

found by Viterbi over the lattice of every piece that matches a substring. Training (§3.2):
    1. seed V with the most frequent substrings (frequency × length) and every character;
    2. EM: E-step the expected count of each piece, Σ_X Σ_{x ∈ S(X)} P(x | X) · count(piece, x),
       by forward-backward on each word's lattice; M-step p(piece) ∝ count — with SentencePiece's
       Bayesian form log p = ψ(count) − ψ(Σ counts) (ψ = digamma), which drops rare pieces;
    3. prune: loss_i = how much the likelihood falls when piece i is removed and its
       occurrences are re-segmented by their best alternative; keep the 75% with the largest
       loss (characters always stay); repeat 2-3 until |V| reaches the target.
Subword regularisation (§2.2) samples a segmentation from P(x | X)^α / Z by forward filtering,
backward sampling over the same lattice.

Text is normalised the way SentencePiece's `identity` rule leaves it: runs of spaces collapse,
the ends are stripped, each space becomes "▁" and one "▁" is prefixed (add_dummy_prefix).
Words (for training) are whitespace-separated, so a piece holds "▁" only at its start.
Checked against sentencepiece (tests/text/test_unigram.py): our Viterbi on its model gives its ids.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import torch

SPACE = "▁"
SPECIALS = ("<unk>", "<s>", "</s>")
UNK_PENALTY = 10.0              # SentencePiece: an unknown character scores min_score − 10
_SPACES = re.compile(" +")


def normalize(text: str) -> str:
    """'  Emma  Woodhouse ' -> '▁Emma▁Woodhouse' (SentencePiece's identity normalisation)."""
    text = _SPACES.sub(" ", text).strip(" ")
    return SPACE + text.replace(" ", SPACE) if text else ""


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


class Unigram:
    """pieces[i] with log-probability scores[i]; ids 0..2 are <unk>, <s>, </s> (never matched)."""

    def __init__(self, pieces: Sequence[str], scores: Sequence[float], unk_id: int = 0,
                 control_ids: Iterable[int] = (1, 2)):
        if len(pieces) != len(scores):
            raise ValueError(f"{len(pieces)} pieces but {len(scores)} scores")
        self.pieces, self.scores, self.unk_id = list(pieces), [float(s) for s in scores], unk_id
        skip = {unk_id, *control_ids}
        self.index = {p: i for i, p in enumerate(self.pieces) if i not in skip}
        self.max_len = max((len(p) for p in self.index), default=1)
        self.unk_score = min(self.scores[i] for i in self.index.values()) - UNK_PENALTY

    def __len__(self) -> int:
        return len(self.pieces)

    # ---- segmentation -----------------------------------------------------------------------
    def _arcs(self, s: str, end: int) -> list[tuple[int, int, float]]:
        """(start, id, score) of every piece ending at `end`; an unknown character if none is one."""
        arcs = []
        for start in range(max(0, end - self.max_len), end):
            i = self.index.get(s[start:end])
            if i is not None:
                arcs.append((start, i, self.scores[i]))
        if s[end - 1:end] not in self.index:
            arcs.append((end - 1, self.unk_id, self.unk_score))
        return arcs

    def viterbi(self, s: str) -> list[int]:
        """x* = argmax Π p(x_i) over segmentations of the normalised string s (ties: earliest start)."""
        n = len(s)
        # path scores accumulate in float32, as SentencePiece's lattice does: (a + b) + c and
        # (a + c) + b can differ in the last bit, and that decides between equal-score paths
        best = [np.float32(0.0)] + [np.float32(-np.inf)] * n
        back: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        for end in range(1, n + 1):
            for start, i, score in self._arcs(s, end):
                cand = best[start] + np.float32(score)    # log P of the best path to `end`
                if cand > best[end]:
                    best[end], back[end] = cand, (start, i)
        ids, end = [], n
        while end > 0:
            start, i = back[end]
            ids.append(i)
            end = start
        return _merge_unknown(ids[::-1], self.unk_id)

    def sample(self, s: str, alpha: float = 1.0, generator: torch.Generator | None = None) -> list[int]:
        """One segmentation drawn from P(x | s)^α / Z: forward filtering, backward sampling."""
        n = len(s)
        fwd = [0.0] + [-math.inf] * n
        arcs = [[]] + [self._arcs(s, end) for end in range(1, n + 1)]
        for end in range(1, n + 1):
            for start, _, score in arcs[end]:
                fwd[end] = _logsumexp(fwd[end], fwd[start] + alpha * score)
        ids, end = [], n
        while end > 0:
            # P(last piece = (start, i) | prefix up to end) ∝ exp(fwd[start] + α score)
            w = torch.tensor([fwd[start] + alpha * score - fwd[end] for start, _, score in arcs[end]])
            k = int(torch.multinomial(w.exp(), 1, generator=generator))
            start, i, _ = arcs[end][k]
            ids.append(i)
            end = start
        return _merge_unknown(ids[::-1], self.unk_id)

    def encode(self, text: str, alpha: float | None = None, generator: torch.Generator | None = None) -> list[int]:
        """Viterbi ids of `text`, or with `alpha` a sampled segmentation (subword regularisation)."""
        s = normalize(text)
        return self.viterbi(s) if alpha is None else self.sample(s, alpha, generator)

    def encode_as_pieces(self, text: str) -> list[str]:
        return [self.pieces[i] for i in self.encode(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.pieces[i] for i in ids).replace(SPACE, " ").lstrip(" ")

    def logprob(self, s: str) -> float:
        """log P(s) = log Σ_x Π p(x_i): the marginal over all segmentations (forward algorithm)."""
        fwd = [0.0] + [-math.inf] * len(s)
        for end in range(1, len(s) + 1):
            for start, _, score in self._arcs(s, end):
                fwd[end] = _logsumexp(fwd[end], fwd[start] + score)
        return fwd[-1]

    @classmethod
    def from_sentencepiece(cls, sp) -> "Unigram":
        """Pieces and scores of a loaded sentencepiece.SentencePieceProcessor (unigram model)."""
        n = sp.get_piece_size()
        pieces = [sp.id_to_piece(i) for i in range(n)]
        scores = [sp.get_score(i) for i in range(n)]
        unk = next(i for i in range(n) if sp.is_unknown(i))
        control = [i for i in range(n) if sp.is_control(i) or sp.is_unused(i)]
        return cls(pieces, scores, unk, control)

    # ---- training -----------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, max_piece_len: int = 16,
              seed_size: int = 20_000, shrink: float = 0.75, em_iters: int = 2) -> "Unigram":
        """EM with pruning (module docstring) to vocab_size pieces, specials included."""
        words = Counter(w for t in texts for w in normalize(t).split(SPACE) if w)
        words = Counter({SPACE + w: c for w, c in words.items()})
        chars = {ch for w in words for ch in w}
        target = vocab_size - len(SPECIALS)
        if target < len(chars):
            raise ValueError(f"vocab_size {vocab_size} < {len(chars)} characters + {len(SPECIALS)} specials")
        logp = _seed_pieces(words, chars, max_piece_len, seed_size)
        while True:
            for _ in range(em_iters):
                logp = _em_step(words, logp, chars)
            if len(logp) <= target:
                break
            logp = _prune(words, logp, chars, max(target, int(len(logp) * shrink)))
        # final: every character, then the most probable pieces (SentencePiece's FinalizePieces)
        order = sorted(logp, key=lambda p: (p not in chars, -logp[p]))[:target]
        order.sort(key=lambda p: -logp[p])
        return cls(list(SPECIALS) + order, [0.0] * len(SPECIALS) + [logp[p] for p in order])


def _merge_unknown(ids: list[int], unk_id: int) -> list[int]:
    """A run of unknown characters is one <unk> (as SentencePiece returns it)."""
    return [i for k, i in enumerate(ids) if not (i == unk_id and k > 0 and ids[k - 1] == unk_id)]


def _seed_pieces(words: Counter, chars: set[str], max_len: int, size: int) -> dict[str, float]:
    """The `size` substrings with the largest frequency × length, plus every character."""
    freq: Counter = Counter()
    for w, c in words.items():
        for i in range(len(w)):
            for j in range(i + 2, min(len(w), i + max_len) + 1):
                if SPACE not in w[i + 1:j]:           # "▁" only as a piece's first character
                    freq[w[i:j]] += c
    char_freq = Counter()
    for w, c in words.items():
        for ch in w:
            char_freq[ch] += c
    seeds = dict(sorted(((p, f * len(p)) for p, f in freq.items()), key=lambda x: -x[1])[:size])
    seeds.update({ch: char_freq[ch] for ch in chars})
    total = sum(seeds.values())
    return {p: math.log(f / total) for p, f in seeds.items()}


def _forward_backward(w: str, logp: dict[str, float], max_len: int) -> tuple[list[float], list[float]]:
    n = len(w)
    fwd, bwd = [0.0] + [-math.inf] * n, [-math.inf] * n + [0.0]
    for end in range(1, n + 1):
        for start in range(max(0, end - max_len), end):
            lp = logp.get(w[start:end])
            if lp is not None:
                fwd[end] = _logsumexp(fwd[end], fwd[start] + lp)
    for start in range(n - 1, -1, -1):
        for end in range(start + 1, min(n, start + max_len) + 1):
            lp = logp.get(w[start:end])
            if lp is not None:
                bwd[start] = _logsumexp(bwd[start], lp + bwd[end])
    return fwd, bwd


def _em_step(words: Counter, logp: dict[str, float], chars: set[str]) -> dict[str, float]:
    """E: expected piece counts by forward-backward; M: log p = ψ(count) − ψ(Σ count)."""
    max_len = max(len(p) for p in logp)
    expected: Counter = Counter()
    for w, c in words.items():
        fwd, bwd = _forward_backward(w, logp, max_len)
        z = fwd[-1]
        for start in range(len(w)):
            for end in range(start + 1, min(len(w), start + max_len) + 1):
                lp = logp.get(w[start:end])
                if lp is not None:
                    # P(piece spans start..end | w) = exp(α_start + log p + β_end − log Z)
                    expected[w[start:end]] += c * math.exp(fwd[start] + lp + bwd[end] - z)
    kept = {p: f for p, f in expected.items() if f >= 0.5 or p in chars}   # drop pieces seen < ½ time
    for ch in chars:
        kept.setdefault(ch, 0.0)                          # characters stay, however rare
    counts = torch.tensor(list(kept.values()), dtype=torch.float64).clamp(min=1e-3)
    new = torch.special.digamma(counts) - torch.special.digamma(counts.sum())
    return dict(zip(kept, new.tolist()))


def _viterbi_pieces(w: str, logp: dict[str, float], max_len: int, banned: str | None = None) -> list[str]:
    n = len(w)
    best, back = [0.0] + [-math.inf] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - max_len), end):
            p = w[start:end]
            lp = logp.get(p) if p != banned else None
            if lp is not None and best[start] + lp > best[end]:
                best[end], back[end] = best[start] + lp, start
    out, end = [], n
    while end > 0:
        out.append(w[back[end]:end])
        end = back[end]
    return out[::-1]


def _prune(words: Counter, logp: dict[str, float], chars: set[str], keep: int) -> dict[str, float]:
    """Keep the `keep` pieces whose removal would cost the likelihood most (characters always)."""
    max_len = max(len(p) for p in logp)
    freq: Counter = Counter()                               # Viterbi counts
    for w, c in words.items():
        for p in _viterbi_pieces(w, logp, max_len):
            freq[p] += c
    total = sum(freq.values())
    loss = {}
    for p, lp in logp.items():
        if p in chars:
            continue
        f = freq.get(p, 0)
        if f == 0:                                          # never used by a best path: no loss
            loss[p] = 0.0
            continue
        alt = _viterbi_pieces(p, logp, max_len, banned=p)   # its best re-segmentation
        # removing p: its f uses become f uses of each alternative piece, the total grows by
        # f·(|alt| − 1); loss = (f / total) · (log p(p) − Σ log p'(alt))
        new_total = total + f * (len(alt) - 1)
        logp_alt = sum(math.log(freq.get(a, 0) + f) - math.log(new_total) for a in alt)
        loss[p] = f / total * (math.log(f / total) - logp_alt)
    ranked = sorted(loss, key=lambda p: -loss[p])[:max(0, keep - len(chars))]
    return {p: logp[p] for p in list(chars) + ranked}
