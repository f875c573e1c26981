"""word2vec: skip-gram and CBOW with negative sampling (Mikolov et al. 2013a, 2013b), and the
bag-of-words word vectors they replaced.

Skip-gram with negative sampling (SGNS, Mikolov et al. 2013b eq. 4): for a centre word w and a
context word c within the window, and K noise words n_k ~ P_n,
    L = −log σ(u_c · v_w) − Σ_k log σ(−u_{n_k} · v_w)
v are the input ("word") vectors, u the output ("context") vectors. Its gradient, written out
(sgns_grad, checked against autograd in tests/models/test_word2vec.py):
    ∂L/∂v_w     = (σ(u_c·v_w) − 1) u_c + Σ_k σ(u_{n_k}·v_w) u_{n_k}
    ∂L/∂u_c     = (σ(u_c·v_w) − 1) v_w
    ∂L/∂u_{n_k} = σ(u_{n_k}·v_w) v_w
CBOW (2013a §3.1) predicts the centre from h = the mean of the context input vectors, with the
same loss on h in place of v_w. As word2vec.c and gensim (cbow_mean=1) do, each context word is
moved by the whole ∂L/∂h, not by its 1/n share (the exact gradient of the mean): n times the
step, which is what their published learning rates are tuned for.

Noise distribution (2013b §2.2): P_n(w) ∝ count(w)^0.75. Subsampling of frequent words (2013b
§2.3, in word2vec.c's form that gensim also uses): keep a token of frequency f = count/total
with probability min(1, (√(f/t) + 1) · t/f). The window of each centre is b ~ U{1..window}
(word2vec.c's "dynamic window"), so nearer words count more. Learning rate: linear decay from
`lr` to `min_lr` over all the tokens, as word2vec.c. Updates: plain SGD on mini-batches of
centres, applied sparsely (index_add_) to the rows each batch touches.
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor

WORD = re.compile(r"[a-z]+")
NOISE_TABLE = 1_000_000         # entries of the unigram table (word2vec.c uses 1e8)


def words(text: str) -> list[str]:
    """Lowercase alphabetic words (apostrophes split: "Emma's" -> "emma", "s")."""
    return WORD.findall(text.lower())


@dataclass
class Word2VecConfig:
    dim: int = 100
    window: int = 5
    negatives: int = 5
    min_count: int = 5
    sample: float = 1e-3          # subsampling threshold t
    epochs: int = 5
    lr: float = 0.025             # gensim's default for skip-gram; CBOW uses 0.05 in word2vec.c
    min_lr: float = 1e-4
    batch: int = 512              # centre words per update
    sg: bool = True               # True: skip-gram; False: CBOW
    seed: int = 0


class Vocab:
    """Words with count ≥ min_count, most frequent first; id = rank."""

    def __init__(self, tokens: Iterable[str], min_count: int):
        counts = Counter(tokens)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if not kept:
            raise ValueError(f"no word occurs ≥ min_count={min_count} times")
        self.words = kept
        self.index = {w: i for i, w in enumerate(kept)}
        self.counts = torch.tensor([counts[w] for w in kept], dtype=torch.float64)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str]) -> Tensor:
        """Ids of the in-vocabulary tokens (the others are dropped, as word2vec does)."""
        return torch.tensor([self.index[t] for t in tokens if t in self.index], dtype=torch.long)

    def noise_probs(self, power: float = 0.75) -> Tensor:
        """P_n(w) ∝ count(w)^0.75."""
        p = self.counts ** power
        return (p / p.sum()).float()

    def keep_probs(self, sample: float) -> Tensor:
        """P(keep w) = min(1, (√(f/t) + 1) · t/f), f = count/total (word2vec.c subsampling)."""
        if sample <= 0:
            return torch.ones(len(self))
        f = self.counts / self.counts.sum()
        return ((torch.sqrt(f / sample) + 1) * sample / f).clamp(max=1.0).float()


def sgns_loss(v: Tensor, u_pos: Tensor, u_neg: Tensor) -> Tensor:
    """v (B, d) centre (or CBOW mean), u_pos (B, d), u_neg (B, K, d) -> summed L of the batch."""
    pos = (v * u_pos).sum(-1)                                     # u_c · v       (B,)
    neg = (u_neg @ v[:, :, None]).squeeze(-1)                     # u_{n_k} · v   (B, K)
    # L = −log σ(u_c·v) − Σ_k log σ(−u_{n_k}·v)
    return -(torch.nn.functional.logsigmoid(pos).sum() + torch.nn.functional.logsigmoid(-neg).sum())


def sgns_grad(v: Tensor, u_pos: Tensor, u_neg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """∂L/∂v (B, d), ∂L/∂u_pos (B, d), ∂L/∂u_neg (B, K, d) of sgns_loss, from the formulas."""
    g_pos = torch.sigmoid((v * u_pos).sum(-1)) - 1                # σ(u_c·v) − 1          (B,)
    g_neg = torch.sigmoid((u_neg @ v[:, :, None]).squeeze(-1))    # σ(u_{n_k}·v)          (B, K)
    grad_v = g_pos[:, None] * u_pos + (g_neg[:, None, :] @ u_neg).squeeze(1)  # Σ_k as one bmm
    return grad_v, g_pos[:, None] * v, g_neg[:, :, None] * v[:, None, :]


class Word2Vec:
    """Train with fit(token_ids); vectors are the input embeddings `W_in` (as gensim's wv)."""

    def __init__(self, vocab: Vocab, cfg: Word2VecConfig):
        self.vocab, self.cfg = vocab, cfg
        g = torch.Generator().manual_seed(cfg.seed)
        V, d = len(vocab), cfg.dim
        # word2vec.c: input vectors U(−0.5/d, 0.5/d), output vectors zero
        self.W_in = (torch.rand(V, d, generator=g) - 0.5) / d
        self.W_out = torch.zeros(V, d)
        self.generator = g
        # word2vec.c's unigram table: word w fills ≈ P_n(w) of it, a uniform draw from it is n ~ P_n
        # (one randint per negative instead of a multinomial over the vocabulary)
        self.noise_table = torch.repeat_interleave(
            torch.arange(V), (vocab.noise_probs() * NOISE_TABLE).round().long().clamp(min=1))
        self.keep = vocab.keep_probs(cfg.sample)
        self.seconds = 0.0

    def _contexts(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """-> ctx (N, 2·window) ids of each centre's context, mask (N, 2·window) of the valid ones."""
        N, W = ids.numel(), self.cfg.window
        b = torch.randint(1, W + 1, (N,), generator=self.generator)              # dynamic window
        offsets = torch.cat([torch.arange(-W, 0), torch.arange(1, W + 1)])       # (2W,)
        pos = torch.arange(N)[:, None] + offsets[None, :]                        # (N, 2W)
        mask = (offsets.abs()[None, :] <= b[:, None]) & (pos >= 0) & (pos < N)
        return ids[pos.clamp(0, N - 1)], mask

    def fit(self, ids: Tensor, log=None) -> Word2Vec:
        """ids: the corpus as one stream of vocabulary ids. Runs cfg.epochs passes."""
        cfg = self.cfg
        total = cfg.epochs * ids.numel()
        done, start = 0, time.perf_counter()
        for epoch in range(cfg.epochs):
            kept = ids[torch.rand(ids.numel(), generator=self.generator) < self.keep[ids]]  # subsampling
            ctx, mask = self._contexts(kept)
            for i in range(0, kept.numel(), cfg.batch):
                # α decays linearly with the share of the corpus already seen (word2vec.c)
                lr = max(cfg.min_lr, cfg.lr * (1 - (done + i * ids.numel() / max(kept.numel(), 1)) / total))
                self._step(kept[i:i + cfg.batch], ctx[i:i + cfg.batch], mask[i:i + cfg.batch], lr)
            done += ids.numel()
            if log is not None:
                log(epoch=epoch + 1, lr=lr, seconds=time.perf_counter() - start)
        self.seconds += time.perf_counter() - start
        return self

    def _step(self, centre: Tensor, ctx: Tensor, mask: Tensor, lr: float) -> None:
        K = self.cfg.negatives
        if self.cfg.sg:
            # skip-gram: one (centre, context) example per valid context slot
            rows, cols = mask.nonzero(as_tuple=True)
            inp, target = centre[rows], ctx[rows, cols]                         # (P,), (P,)
            v = self.W_in[inp]                                                  # (P, d)
        else:
            # CBOW: h = mean of the valid context input vectors, predicting the centre
            has = mask.any(dim=1)
            centre, ctx, mask = centre[has], ctx[has], mask[has]
            m = mask.float()[:, :, None]
            v = (self.W_in[ctx] * m).sum(1) / m.sum(1)                          # h (B, d)
            target = centre
        neg = self.noise_table[torch.randint(self.noise_table.numel(), (target.numel(), K),
                                             generator=self.generator)]         # n_k ~ P_n
        grad_v, grad_pos, grad_neg = sgns_grad(v, self.W_out[target], self.W_out[neg])
        self.W_out.index_add_(0, target, grad_pos, alpha=-lr)
        self.W_out.index_add_(0, neg.flatten(), grad_neg.flatten(0, 1), alpha=-lr)
        if self.cfg.sg:
            self.W_in.index_add_(0, inp, grad_v, alpha=-lr)
        else:
            # every context word j gets ∂L/∂h (word2vec.c; the exact ∂L/∂v_j would be ∂L/∂h / n)
            g = grad_v[:, None, :].expand(-1, ctx.size(1), -1)
            self.W_in.index_add_(0, ctx[mask], g[mask], alpha=-lr)

    def vectors(self) -> Tensor:
        return self.W_in


def fit_word2vec(tokens: Sequence[str], cfg: Word2VecConfig, log=None) -> Word2Vec:
    """Vocabulary from `tokens`, then cfg.epochs of training."""
    vocab = Vocab(tokens, cfg.min_count)
    return Word2Vec(vocab, cfg).fit(vocab.encode(tokens), log)


def unit_rows(vectors: Tensor) -> Tensor:
    return vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12)


def nearest(vectors: Tensor, index: dict[str, int], words_list: Sequence[str], word: str, k: int = 5) -> list[tuple[str, float]]:
    """The k words of highest cosine similarity to `word` (itself excluded)."""
    if word not in index:
        raise KeyError(f"{word!r} is not in the vocabulary ({len(index)} words)")
    unit = unit_rows(vectors)
    sims = unit @ unit[index[word]]
    sims[index[word]] = -2.0
    top = sims.topk(k)
    return [(words_list[i], float(s)) for s, i in zip(top.values, top.indices)]


def analogy_accuracy(vectors: Tensor, index: dict[str, int], questions: Sequence[tuple[str, str, str, str]]) -> tuple[float, int]:
    """3CosAdd (Mikolov et al. 2013c): a : b :: c : ?  answered by argmax_d cos(d, b̂ − â + ĉ)
    over the vocabulary without a, b, c (as gensim's most_similar). -> (accuracy, questions used);
    questions with a word outside the vocabulary are skipped."""
    qs = [q for q in questions if all(w in index for w in q)]
    if not qs:
        return math.nan, 0
    unit = unit_rows(vectors)
    ids = torch.tensor([[index[w] for w in q] for q in qs])                     # (Q, 4)
    target = unit[ids[:, 1]] - unit[ids[:, 0]] + unit[ids[:, 2]]                # b − a + c
    sims = unit_rows(target) @ unit.T                                           # (Q, V)
    sims.scatter_(1, ids[:, :3], -2.0)                                          # exclude a, b, c
    return float((sims.argmax(1) == ids[:, 3]).float().mean()), len(qs)


def bag_of_words_vectors(documents: Sequence[Sequence[str]], index: dict[str, int]) -> Tensor:
    """Each word as its TF-IDF row over the documents (a V × D term-document matrix), the
    count-based word vectors before word2vec. Dense (V, D) float."""
    V, D = len(index), len(documents)
    counts = torch.zeros(V, D)
    for j, doc in enumerate(documents):
        ids = torch.tensor([index[w] for w in doc if w in index], dtype=torch.long)
        if ids.numel():
            counts[:, j].index_add_(0, ids, torch.ones(ids.numel()))
    df = (counts > 0).sum(1, keepdim=True).float()
    # tf · idf, idf = log(D / df)
    return counts * torch.log(D / df.clamp(min=1))
