"""BERT's pre-training data (MLM 80/10/10, NSP pairs, RoBERTa's dynamic masking) and its
fine-tuning heads (sequence classification, span QA, BIO token tagging).

Devlin et al. 2019 §3.1 "Task #1": 15% of the token positions are chosen for prediction; a chosen
token is replaced by [MASK] 80% of the time, by a random token 10%, and left unchanged 10% (so
the model cannot learn that only [MASK] positions matter). "Task #2": for 50% of the pairs B is
the segment that follows A (IsNext, label 0), for 50% a random segment (NotNext, label 1).
RoBERTa (Liu et al. 2019 §4.1): a fresh mask every time a sequence is fed (dynamic), no NSP.
Fine-tuning (§4): a linear layer on the pooled [CLS] (classification), on every token (tagging),
or two logits per token giving the answer's start and end (SQuAD, §4.2).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.bert import IGNORE, Bert, BertConfig
from deepatlas.models.sentence_encoder import mean_pool


def mask_tokens(ids: Tensor, mask_id: int, vocab_size: int, special: Tensor | None = None,
                prob: float = 0.15, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """ids (B, T) -> (inputs, labels): labels = the original id at chosen positions, else -100.

    special: (B, T) bool, positions never chosen ([CLS], [SEP], padding)."""
    if not 0.0 < prob < 1.0:
        raise ValueError(f"mask prob must be in (0, 1), got {prob}")
    g = dict(generator=generator, device=ids.device)
    # choose each (non-special) position with probability 0.15
    chosen = torch.rand(ids.shape, **g) < prob
    if special is not None:
        chosen &= ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    # of the chosen: 80% -> [MASK]; of the other 20%, half (10% of all) -> a random token
    u = torch.rand(ids.shape, **g)
    to_mask = chosen & (u < 0.8)
    to_random = chosen & (u >= 0.8) & (u < 0.9)
    inputs = ids.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = torch.randint(0, vocab_size, (int(to_random.sum()),), **g)
    return inputs, labels                                   # the last 10%: unchanged


def masked_batch(ids: Tensor, step: int, seed: int, mask_id: int, vocab_size: int,
                 special: Tensor | None = None, dynamic: bool = True, prob: float = 0.15) -> tuple[Tensor, Tensor]:
    """The mask of a batch at training step `step`, deterministic in (step, seed).

    dynamic=True (RoBERTa): a new mask at every step. dynamic=False (BERT's static masking, done
    once in preprocessing): the same mask whenever the same sequences come back."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + (step if dynamic else 0))
    inputs, labels = mask_tokens(ids.cpu(), mask_id, vocab_size, None if special is None else special.cpu(),
                                 prob, g)
    return inputs.to(ids.device), labels.to(ids.device)


def nsp_pairs(segments: Sequence[Sequence[int]], n: int, generator: torch.Generator,
              doc_of: Sequence[int] | None = None) -> list[tuple[int, int, int]]:
    """n pairs (a, b, label) of segment indices: label 0 (IsNext) b = a + 1 of the same document,
    label 1 (NotNext) b drawn at random from another document (or any non-following segment)."""
    if len(segments) < 3:
        raise ValueError(f"NSP needs at least 3 segments, got {len(segments)}")
    doc_of = list(doc_of) if doc_of is not None else [0] * len(segments)
    starts = [i for i in range(len(segments) - 1) if doc_of[i] == doc_of[i + 1]]
    if not starts:
        raise ValueError("no two consecutive segments share a document: no IsNext pair exists")
    one_doc = len(set(doc_of)) == 1
    pairs = []
    for _ in range(n):
        a = starts[int(torch.randint(len(starts), (1,), generator=generator))]
        if float(torch.rand((), generator=generator)) < 0.5:
            pairs.append((a, a + 1, 0))
            continue
        while True:
            b = int(torch.randint(len(segments), (1,), generator=generator))
            if (doc_of[b] != doc_of[a]) if not one_doc else b not in (a, a + 1):
                break
        pairs.append((a, b, 1))
    return pairs


def pair_input(a: Sequence[int], b: Sequence[int], cls_id: int, sep_id: int) -> tuple[list[int], list[int]]:
    """[CLS] A [SEP] B [SEP] and its segment ids (0 for [CLS] A [SEP], 1 for B [SEP])."""
    ids = [cls_id, *a, sep_id, *b, sep_id]
    return ids, [0] * (len(a) + 2) + [1] * (len(b) + 1)


class SequenceClassifier(nn.Module):
    """logits (B, n_labels) = W · Dropout(pooled) + b; `pooling="mean"` averages the real tokens
    instead of the [CLS] pooler. Names follow HF BertForSequenceClassification (classifier)."""

    def __init__(self, encoder: Bert, n_labels: int, pooling: str = "cls", dropout: float | None = None):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling {pooling!r}; valid: cls, mean")
        self.bert, self.pooling = encoder, pooling
        self.dropout = nn.Dropout(encoder.config.dropout if dropout is None else dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        out = self.bert(ids, attention_mask, token_type_ids)
        if self.pooling == "cls":
            h = out.pooled                                                      # (B, H)
        else:
            h = mean_pool(out.last_hidden_state, attention_mask)                # (B, H)
        return self.classifier(self.dropout(h))


class TokenTagger(nn.Module):
    """Per-token logits (B, T, n_tags), e.g. BIO tags (HF BertForTokenClassification)."""

    def __init__(self, encoder: Bert, n_tags: int, dropout: float | None = None):
        super().__init__()
        self.bert = encoder
        self.dropout = nn.Dropout(encoder.config.dropout if dropout is None else dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, n_tags)

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        return self.classifier(self.dropout(self.bert(ids, attention_mask, token_type_ids).last_hidden_state))


class SpanQA(nn.Module):
    """Start and end logits (B, T) each: [s_t, e_t] = W h_t + b (Devlin et al. 2019 §4.2;
    HF BertForQuestionAnswering's qa_outputs)."""

    def __init__(self, encoder: Bert):
        super().__init__()
        self.bert = encoder
        self.qa_outputs = nn.Linear(encoder.config.hidden_size, 2)

    def forward(self, ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logits = self.qa_outputs(self.bert(ids, attention_mask, token_type_ids).last_hidden_state)  # (B, T, 2)
        start, end = logits.unbind(-1)
        return start, end


def span_loss(start: Tensor, end: Tensor, start_pos: Tensor, end_pos: Tensor) -> Tensor:
    """(CE(start, i) + CE(end, j)) / 2, as BERT's SQuAD fine-tuning."""
    return (F.cross_entropy(start, start_pos) + F.cross_entropy(end, end_pos)) / 2


def best_span(start: Tensor, end: Tensor, max_len: int = 30, allowed: Tensor | None = None) -> tuple[int, int, float]:
    """argmax over i ≤ j < i + max_len of s_i + e_j (one example: start, end (T,)); allowed (T,)
    bool marks the tokens an answer may use (the context, not the question). -> (i, j, score)."""
    T = start.size(0)
    scores = start[:, None] + end[None, :]                                  # (T, T): s_i + e_j
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    ok = (j >= i) & (j < i + max_len)
    if allowed is not None:
        ok &= allowed[:, None] & allowed[None, :]
    if not bool(ok.any()):
        raise ValueError("no span is allowed: every token is outside `allowed`")
    scores = scores.masked_fill(~ok, float("-inf"))
    flat = int(scores.argmax())
    return flat // T, flat % T, float(scores.view(-1)[flat])


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """BIO tags -> entity spans (type, start, end inclusive); an I- without a B- starts a span
    (the conlleval convention)."""
    spans: list[tuple[str, int, int]] = []
    kind, start = None, 0
    for t, tag in enumerate(list(tags) + ["O"]):
        if tag != "O" and not tag.startswith(("B-", "I-")):
            raise ValueError(f"tag {tag!r} at {t} is not O, B-TYPE or I-TYPE")
        inside = tag.startswith("I-") and kind == tag[2:]
        if kind is not None and not inside:
            spans.append((kind, start, t - 1))
            kind = None
        if tag != "O" and not inside:
            kind, start = tag[2:], t
    return spans


def small_bert(vocab_size: int, hidden: int = 128, layers: int = 2, heads: int = 4,
               max_position: int = 128, dropout: float = 0.1) -> BertConfig:
    """A BERT small enough to pre-train on a CPU in minutes (FFN 4× the width)."""
    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, n_layer=layers, n_head=heads,
                      intermediate_size=4 * hidden, max_position=max_position, dropout=dropout)
