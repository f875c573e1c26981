"""Connectionist temporal classification (Graves et al. 2006) and a small CTC speech recogniser.

A path π over T frames picks one of C symbols (or the blank ∅) per frame; B(π) removes repeats,
then blanks ("hh∅e∅ll∅lo" -> "hello"). P(y | x) = Σ_{π: B(π) = y} Π_t p_t(π_t).

Loss — the forward algorithm over y' = ∅ y₁ ∅ y₂ … y_L ∅ (length S = 2L + 1), in log space (eqs. 6-8):
    α_1(1) = p_1(∅),  α_1(2) = p_1(y₁)
    α_t(s) = [α_{t−1}(s) + α_{t−1}(s−1) + 1{y'_s ≠ ∅, y'_s ≠ y'_{s−2}} α_{t−1}(s−2)] · p_t(y'_s)
    −log P(y | x) = −log(α_T(S) + α_T(S−1))
Gradients come from autograd through the recursion (equal to F.ctc_loss's, tests/models/test_ctc.py).

Decoding: greedy (best path: argmax per frame, then B) and prefix beam search (Hannun et al. 2014,
Alg. 1): for each prefix keep P_b (paths ending in blank) and P_nb (ending in its last symbol),
so that paths collapsing to the same prefix are summed rather than competing.
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.nn.blocks import TransformerBlock, make_norm
from deepatlas.nn.positions import SinusoidalPositions

NEG_INF = float("-inf")
# log 0 inside the loss: a finite stand-in, so that a state no path reaches gets a zero gradient
# (logsumexp over only −inf has a NaN gradient); every reachable log α is far above it
IMPOSSIBLE = -1e30


def ctc_loss(log_probs: Tensor, targets: Tensor, input_lengths: Tensor, target_lengths: Tensor,
             blank: int = 0, reduction: str = "mean", fast: bool = False) -> Tensor:
    """log_probs (T, B, C) log-softmaxed; targets (B, L_max) padded; -> loss as F.ctc_loss's
    (reduction "mean": each loss divided by its target length, then the batch mean; "sum"; "none").

    fast=True is torch's fused kernel (equal to the recursion below, tests/models/test_ctc.py),
    with zero_infinity: an utterance too short for its transcript adds 0, not inf."""
    if fast:
        return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=blank,
                          reduction=reduction, zero_infinity=True)
    T, B, C = log_probs.shape
    if targets.dim() != 2 or targets.size(0) != B:
        raise ValueError(f"targets should be (B={B}, L), got {tuple(targets.shape)}")
    if (input_lengths > T).any() or (target_lengths > targets.size(1)).any():
        raise ValueError("an input or target length exceeds its tensor's size")
    L = targets.size(1)
    S = 2 * L + 1
    # y' = ∅ y₁ ∅ y₂ … ∅                                                   (B, S)
    ext = torch.full((B, S), blank, dtype=torch.long, device=log_probs.device)
    ext[:, 1::2] = targets
    # the skip s-2 -> s is allowed onto a symbol that differs from the one two back
    skip = torch.zeros(B, S, dtype=torch.bool, device=log_probs.device)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    emit = log_probs.gather(2, ext[None].expand(T, B, S))                  # log p_t(y'_s)  (T, B, S)
    alpha = torch.full((B, S), IMPOSSIBLE, dtype=log_probs.dtype, device=log_probs.device)
    alpha[:, 0] = emit[0, :, 0]
    alpha[:, 1] = torch.where(target_lengths > 0, emit[0, :, 1], torch.full_like(emit[0, :, 1], IMPOSSIBLE))
    finals = [alpha]
    pad = torch.full((B, 1), IMPOSSIBLE, dtype=log_probs.dtype, device=log_probs.device)
    for t in range(1, T):
        prev1 = torch.cat([pad, alpha[:, :-1]], 1)                         # α_{t−1}(s−1)
        prev2 = torch.cat([pad, pad, alpha[:, :-2]], 1).masked_fill(~skip, IMPOSSIBLE)   # α_{t−1}(s−2)
        alpha = torch.logsumexp(torch.stack([alpha, prev1, prev2]), 0) + emit[t]
        finals.append(alpha)
    at_end = torch.stack(finals)[input_lengths - 1, torch.arange(B)]      # α_{T_b}           (B, S)
    last = 2 * target_lengths                                              # index of the final ∅
    ends = torch.stack([at_end.gather(1, last[:, None])[:, 0],
                        at_end.gather(1, (last - 1).clamp(min=0)[:, None])[:, 0].masked_fill(target_lengths == 0, IMPOSSIBLE)])
    nll = -torch.logsumexp(ends, 0)                                        # (B,)
    nll = nll.masked_fill(nll > -IMPOSSIBLE / 2, float("inf"))            # no path fits: P = 0, as torch
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    if reduction == "mean":
        return (nll / target_lengths.clamp(min=1).to(nll.dtype)).mean()
    raise ValueError(f"reduction={reduction!r}; valid: mean, sum, none")


def collapse(path: list[int], blank: int = 0) -> list[int]:
    """B(π): merge repeats, then drop blanks."""
    out, prev = [], None
    for s in path:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return out


def greedy_decode(log_probs: Tensor, lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """(T, B, C) -> per utterance B(argmax path)."""
    best = log_probs.argmax(-1).T.tolist()                                 # (B, T)
    return [collapse(row[:int(n)], blank) for row, n in zip(best, lengths)]


def _logadd(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def prefix_beam_decode(log_probs: Tensor, beam: int = 8, blank: int = 0, prune: float = -12.0) -> list[int]:
    """One utterance (T, C) -> the most probable labelling found by CTC prefix beam search.

    Symbols with log p_t below `prune` are skipped at frame t (they cannot change the top beams)."""
    lp = log_probs.detach().double().cpu()
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}   # prefix -> (log P_b, log P_nb)
    for t in range(lp.size(0)):
        row = lp[t].tolist()
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        cands = [c for c in range(len(row)) if row[c] >= prune or c == blank]
        for prefix, (pb, pnb) in beams.items():
            total = _logadd(pb, pnb)
            # a blank keeps the prefix; ends it in blank
            nxt[prefix][0] = _logadd(nxt[prefix][0], total + row[blank])
            for c in cands:
                if c == blank:
                    continue
                ext = prefix + (c,)
                if prefix and c == prefix[-1]:
                    # "a a" without a blank between collapses to "a": only P_nb stays on the prefix
                    nxt[prefix][1] = _logadd(nxt[prefix][1], pnb + row[c])
                    nxt[ext][1] = _logadd(nxt[ext][1], pb + row[c])          # "a ∅ a" makes "aa"
                else:
                    nxt[ext][1] = _logadd(nxt[ext][1], total + row[c])
        ranked = sorted(nxt.items(), key=lambda kv: -_logadd(*kv[1]))[:beam]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    return list(max(beams.items(), key=lambda kv: _logadd(*kv[1]))[0])


class CTCRecogniser(nn.Module):
    """log-mel (B, n_mels, T) -> per-frame log-probabilities (T/2, B, vocab + 1), index 0 = blank.

    Two 1-D convolutions (the second with stride 2: 20 ms per output frame), sinusoidal positions,
    pre-norm Transformer encoder blocks (deepatlas.nn), a linear layer to the symbols."""

    def __init__(self, n_symbols: int, n_mels: int = 80, d_model: int = 128, n_head: int = 4,
                 layers: int = 3, dropout: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, 3, stride=2, padding=1)
        self.positions = SinusoidalPositions(d_model, 4096)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_head, 4 * d_model, norm_first=True,
                                                     activation="gelu", dropout=dropout) for _ in range(layers))
        self.norm = make_norm("layernorm", d_model, 1e-5)
        self.head = nn.Linear(d_model, n_symbols + 1)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def output_lengths(frames: Tensor) -> Tensor:
        return (frames - 1) // 2 + 1                                      # the stride-2 conv

    def forward(self, mel: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        """-> (log-probs (T', B, C), output lengths (B,))."""
        # frames past each utterance's end are zeroed before each convolution, so a padded batch
        # gives every utterance exactly what it gets alone (the convolutions' own zero padding)
        keep = (torch.arange(mel.size(2), device=mel.device)[None, :] < frames[:, None])[:, None, :]
        x = F.gelu(self.conv1(mel * keep)) * keep
        x = F.gelu(self.conv2(x)).transpose(1, 2)                        # (B, T', d)
        lengths = self.output_lengths(frames)
        pad = torch.arange(x.size(1), device=x.device)[None, :] >= lengths[:, None]   # (B, T') True = pad
        x = self.dropout(x + self.positions(x.size(1)))
        for blk in self.blocks:
            x = blk(x, key_padding_mask=pad)
        return self.head(self.norm(x)).log_softmax(-1).transpose(0, 1), lengths
