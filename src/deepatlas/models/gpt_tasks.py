"""GPT-1 task fine-tuning (Radford et al. 2018, "Improving Language Understanding by Generative
Pre-Training", §3.2–3.3), on our GPT (deepatlas.models.gpt).

§3.2: the final block's activation h_l^m at the last input token feeds one added linear layer W_y,
    P(y | x^1..x^m) = softmax(h_l^m W_y)                                      (eq. 3)
    L2(C) = Σ_(x,y) log P(y | x^1..x^m)                                       (eq. 4)
and the language-modelling objective L1 on the same fine-tuning inputs is kept as an auxiliary loss,
    L3(C) = L2(C) + λ · L1(C),   λ = 0.5 in the paper                         (eq. 5)
(here both are means — per example for L2, per predicted token for L1 — as cross-entropies).
§3.3 input transformations (Figure 1): structured inputs become one token sequence, with a start
token s, a delimiter $ and an extract token e, randomly initialised embeddings added to the vocabulary:
    entailment / sentence pairs:  s premise $ hypothesis e
    multiple choice:              s context $ answer_k e   for each of the K answers; each
                                  sequence gives one score h_l^m W_y, a softmax over the K scores
h_l^m is the activation at the extract token e. Our GPT is pre-LN (GPT-2), so the "final block
activation" is the output of its final LayerNorm ln_f, the input of the LM head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepatlas.models.gpt import GPT

IGNORE = -100


@dataclass(frozen=True)
class TaskTokens:
    """The ids of GPT-1's added tokens: start s, delimiter $, extract e, and a padding id."""

    start: int
    delim: int
    extract: int
    pad: int

    @classmethod
    def after(cls, vocab_size: int) -> TaskTokens:
        """The four ids vocab_size .. vocab_size + 3 (a vocabulary needs vocab_size + 4 rows)."""
        return cls(vocab_size, vocab_size + 1, vocab_size + 2, vocab_size + 3)

    @property
    def ids(self) -> tuple[int, int, int, int]:
        return self.start, self.delim, self.extract, self.pad


def pair_input(a: Sequence[int], b: Sequence[int], tok: TaskTokens) -> list[int]:
    """s A $ B e — the entailment transformation (Figure 1)."""
    return [tok.start, *a, tok.delim, *b, tok.extract]


def choice_inputs(context: Sequence[int], answers: Sequence[Sequence[int]], tok: TaskTokens) -> list[list[int]]:
    """[s context $ answer_k e for each k] — the multiple-choice transformation (Figure 1)."""
    if len(answers) < 2:
        raise ValueError(f"multiple choice needs at least 2 answers, got {len(answers)}")
    return [pair_input(context, answer, tok) for answer in answers]


def pad_rows(rows: Sequence[Sequence[int]], pad: int) -> tuple[Tensor, Tensor]:
    """Right-pad token rows -> (ids (B, T), extract (B,)): extract[b] = the last real position of
    row b, where its e token sits. Causal attention: the pads after it never reach it."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("pad_rows needs at least one row and no empty row")
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(list(r))
    return ids, torch.tensor([len(r) - 1 for r in rows])


def pad_choices(examples: Sequence[Sequence[Sequence[int]]], pad: int) -> tuple[Tensor, Tensor]:
    """B examples of K rows each -> (ids (B, K, T), extract (B, K))."""
    K = len(examples[0])
    if any(len(ex) != K for ex in examples):
        raise ValueError(f"every example needs the same number of choices; got {sorted({len(e) for e in examples})}")
    ids, extract = pad_rows([row for ex in examples for row in ex], pad)
    return ids.view(len(examples), K, -1), extract.view(len(examples), K)


class GPTTaskModel(nn.Module):
    """Our GPT with GPT-1's task head W_y on h_l^m, the final activation at the extract token.

    forward(ids (B, T), extract (B,)) -> (task logits (B, n_out), LM logits (B, T, V));
    choices(ids (B, K, T), extract (B, K)) -> (choice logits (B, K), LM logits (B·K, T, V)).
    """

    def __init__(self, gpt: GPT, n_out: int, dropout: float = 0.1):
        super().__init__()
        if n_out < 1:
            raise ValueError(f"n_out={n_out}; valid: ≥ 1 (1 for a multiple-choice score)")
        self.gpt = gpt
        self.drop = nn.Dropout(dropout)                      # GPT-1: dropout 0.1 on the classifier
        self.head = nn.Linear(gpt.config.n_embd, n_out)      # W_y
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self._final: Tensor | None = None
        # the output of ln_f (the LM head's input) is h_l for every position; keep it on the way
        gpt.ln_f.register_forward_hook(lambda _m, _inp, out: setattr(self, "_final", out))

    def forward(self, ids: Tensor, extract: Tensor) -> tuple[Tensor, Tensor]:
        lm_logits = self.gpt(ids)                                        # (B, T, V)
        h = self._final[torch.arange(ids.size(0), device=ids.device), extract]  # h_l^m: (B, d)
        self._final = None
        return self.head(self.drop(h)), lm_logits                        # (B, n_out), (B, T, V)

    def choices(self, ids: Tensor, extract: Tensor) -> tuple[Tensor, Tensor]:
        B, K, T = ids.shape
        scores, lm_logits = self(ids.reshape(B * K, T), extract.reshape(B * K))  # (B·K, 1)
        return scores.view(B, K), lm_logits                              # softmax over dim 1 = choices


def lm_targets(ids: Tensor, pad: int) -> Tensor:
    """Next-token targets of L1 on the task inputs: ids shifted left, IGNORE at padding and at the
    last position. ids (..., T) -> (..., T)."""
    y = torch.full_like(ids, IGNORE)
    y[..., :-1] = ids[..., 1:]
    return y.masked_fill(y == pad, IGNORE)


def gpt1_loss(task_logits: Tensor, labels: Tensor, lm_logits: Tensor, ids: Tensor, pad: int,
              lm_weight: float = 0.5) -> tuple[Tensor, Tensor, Tensor]:
    """-> (L3, L2, L1):  L3 = L2 + λ·L1  (eq. 5), L2 the task cross-entropy (eq. 4, a mean),
    L1 the LM cross-entropy on the same inputs. For multiple choice task_logits are the (B, K)
    choice scores and labels the index of the right answer: softmax over the choices."""
    l2 = F.cross_entropy(task_logits, labels)
    if lm_weight == 0:
        return l2, l2, l2.new_zeros(())
    y = lm_targets(ids.reshape(-1, ids.size(-1)), pad)                   # (N, T)
    l1 = F.cross_entropy(lm_logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
    return l2 + lm_weight * l1, l2, l1
