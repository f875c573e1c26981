"""Recurrent networks from their gate equations, and a seq2seq encoder-decoder with attention.

Cells (parameter names and gate order are torch.nn's, so weights copy over unchanged):
    RNN  (Elman 1990):   h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
    LSTM (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000):
        i = σ(W_ii x + b_ii + W_hi h + b_hi)      input gate
        f = σ(W_if x + b_if + W_hf h + b_hf)      forget gate
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)   candidate cell
        o = σ(W_io x + b_io + W_ho h + b_ho)      output gate
        c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
    GRU  (Cho et al. 2014, eq. 5–8, in torch's form where r gates W_hn h + b_hn):
        r = σ(W_ir x + b_ir + W_hr h + b_hr)      reset gate
        z = σ(W_iz x + b_iz + W_hz h + b_hz)      update gate
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        h' = (1 − z) ⊙ n + z ⊙ h

`Recurrent` stacks cells into layers, optionally bidirectional, over variable-length batches
(equal to torch.nn.RNN/LSTM/GRU on a pack_padded_sequence: padded outputs are 0 and the final
state of each row is taken at its last real step). The input projections W_i· x of all time
steps are one matmul before the loop (fast=True); fast=False calls the cell step by step.

Seq2seq (Sutskever et al. 2014; Cho et al. 2014): an encoder RNN reads the source; a decoder
RNN writes the target with teacher forcing (its input at t is the true token t − 1). Without
attention the whole source must pass through the last encoder state (the "fixed-length
vector"); attention (Bahdanau et al. 2015; Luong et al. 2015) gives each decoder step a
weighted mean of all encoder states:
    additive (Bahdanau eq. 6):  e_tj = vᵀ tanh(W s_{t−1} + U h_j)
    dot      (Luong eq. 8):     e_tj = s_tᵀ h_j
    general  (Luong eq. 8):     e_tj = s_tᵀ W_a h_j
    α_tj = softmax_j(e_tj),  c_t = Σ_j α_tj h_j
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODES = {"rnn": 1, "lstm": 4, "gru": 3}       # gate blocks stacked in weight_ih / weight_hh
ATTENTIONS = ("none", "bahdanau", "dot", "general")


class Cell(nn.Module):
    """One step of an RNN / LSTM / GRU: step(x_proj, state) with x_proj = W_ih x + b_ih precomputed.

    state: h (B, H), or (h, c) for the LSTM."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown cell {mode!r}; valid: {', '.join(MODES)}")
        self.mode, self.hidden_size = mode, hidden_size
        k = MODES[mode] * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(k, input_size))
        self.weight_hh = nn.Parameter(torch.empty(k, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(k)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(k)) if bias else None
        for p in self.parameters():               # torch's init: U(−1/√H, 1/√H)
            nn.init.uniform_(p, -hidden_size ** -0.5, hidden_size ** -0.5)

    def project_input(self, x: Tensor) -> Tensor:
        """W_ih x + b_ih for (..., input_size) -> (..., gates·H)."""
        return F.linear(x, self.weight_ih, self.bias_ih)

    def step(self, xp: Tensor, state: Tensor | tuple[Tensor, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
        h = state[0] if self.mode == "lstm" else state
        hp = F.linear(h, self.weight_hh, self.bias_hh)                      # W_hh h + b_hh (B, gates·H)
        if self.mode == "rnn":
            # h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
            return torch.tanh(xp + hp)
        if self.mode == "lstm":
            i, f, g, o = (xp + hp).chunk(4, dim=-1)                          # (B, H) each
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * state[1] + i * g                                         # c' = f ⊙ c + i ⊙ g
            return o * torch.tanh(c), c                                      # h' = o ⊙ tanh(c')
        xr, xz, xn = xp.chunk(3, dim=-1)
        hr, hz, hn = hp.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)                                           # reset gate
        z = torch.sigmoid(xz + hz)                                           # update gate
        n = torch.tanh(xn + r * hn)                                          # candidate
        return (1 - z) * n + z * h                                           # h' = (1 − z) ⊙ n + z ⊙ h

    def forward(self, x: Tensor, state: Tensor | tuple[Tensor, Tensor] | None = None):
        """torch.nn.RNNCell / LSTMCell / GRUCell: x (B, input) -> new state."""
        if state is None:
            h = x.new_zeros(x.size(0), self.hidden_size)
            state = (h, h) if self.mode == "lstm" else h
        return self.step(self.project_input(x), state)


class Recurrent(nn.Module):
    """Multi-layer, optionally bidirectional RNN / LSTM / GRU over (B, T, input) batches.

    forward(x, lengths, state) -> (output (B, T, dirs·H), final state (layers·dirs, B, H),
    or (h_n, c_n) for the LSTM) — torch.nn.RNN/LSTM/GRU(batch_first=True)'s contract."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, fast: bool = True):
        super().__init__()
        self.mode, self.hidden_size, self.num_layers = mode, hidden_size, num_layers
        self.dirs = 2 if bidirectional else 1
        self.fast = fast
        self.cells = nn.ModuleList(
            Cell(mode, input_size if layer == 0 else hidden_size * self.dirs, hidden_size)
            for layer in range(num_layers) for _ in range(self.dirs))
        self.dropout = nn.Dropout(dropout)           # between layers, as torch.nn.LSTM's dropout

    def load_torch(self, ref: nn.RNNBase) -> Recurrent:
        """Copy the weights of a torch.nn.RNN/LSTM/GRU (weight_ih_l{k}[_reverse], ...)."""
        with torch.no_grad():
            for layer in range(self.num_layers):
                for d in range(self.dirs):
                    cell, suffix = self.cells[layer * self.dirs + d], f"_l{layer}" + ("_reverse" if d else "")
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                        getattr(cell, name).copy_(getattr(ref, name + suffix))
        return self

    def _run(self, cell: Cell, x: Tensor, keep: Tensor, state, reverse: bool):
        """One direction of one layer. keep (B, T, 1): 1 at real steps; padded steps leave the state as is."""
        T = x.size(1)
        xp = cell.project_input(x) if self.fast else None                  # (B, T, gates·H), one matmul
        outs = [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            new = cell.step(xp[:, t] if self.fast else cell.project_input(x[:, t]), state)
            m = keep[:, t]
            if self.mode == "lstm":
                state = (torch.where(m, new[0], state[0]), torch.where(m, new[1], state[1]))
                outs[t] = new[0] * m
            else:
                state = torch.where(m, new, state)
                outs[t] = new * m
        return torch.stack(outs, dim=1), state                               # (B, T, H)

    def forward(self, x: Tensor, lengths: Tensor | None = None, state=None):
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        if int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise ValueError(f"lengths must be in 1..{T} (the padded length), got {lengths.tolist()}")
        keep = (torch.arange(T)[None, :] < lengths.cpu()[:, None]).to(x.device)[..., None]  # (B, T, 1)
        n = self.num_layers * self.dirs
        if state is None:
            h0 = x.new_zeros(n, B, self.hidden_size)
            state = (h0, h0) if self.mode == "lstm" else h0
        finals = []
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.dirs):
                i = layer * self.dirs + d
                s = (state[0][i], state[1][i]) if self.mode == "lstm" else state[i]
                out, s = self._run(self.cells[i], x, keep, s, reverse=d == 1)
                outs.append(out)
                finals.append(s)
            x = torch.cat(outs, dim=-1)                                      # (B, T, dirs·H)
            if layer < self.num_layers - 1:
                x = self.dropout(x)
        if self.mode == "lstm":
            return x, (torch.stack([f[0] for f in finals]), torch.stack([f[1] for f in finals]))
        return x, torch.stack(finals)


class Attention(nn.Module):
    """query (B, Hq), keys (B, S, Hk), pad (B, S) bool True = padding -> context (B, Hk), α (B, S)."""

    def __init__(self, kind: str, query_size: int, key_size: int, attn_size: int | None = None):
        super().__init__()
        if kind not in ATTENTIONS[1:]:
            raise ValueError(f"unknown attention {kind!r}; valid: {', '.join(ATTENTIONS[1:])}")
        if kind == "dot" and query_size != key_size:
            raise ValueError(f"dot attention needs equal sizes, got query {query_size}, keys {key_size}")
        self.kind = kind
        if kind == "bahdanau":
            a = attn_size or query_size
            self.W = nn.Linear(query_size, a, bias=False)
            self.U = nn.Linear(key_size, a)
            self.v = nn.Linear(a, 1, bias=False)
        elif kind == "general":
            self.W_a = nn.Linear(key_size, query_size, bias=False)

    def forward(self, query: Tensor, keys: Tensor, pad: Tensor | None = None,
                keys_proj: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """keys_proj: U h_j (bahdanau) or W_a h_j (general), computed once per source by project()."""
        kp = self.project(keys) if keys_proj is None else keys_proj
        if self.kind == "bahdanau":
            # e_tj = vᵀ tanh(W s + U h_j)                                     (B, S)
            scores = self.v(torch.tanh(self.W(query)[:, None, :] + kp)).squeeze(-1)
        else:
            # e_tj = s_tᵀ h_j (dot) or s_tᵀ W_a h_j (general)                 (B, S)
            scores = (kp @ query[:, :, None]).squeeze(-1)
        if pad is not None:
            scores = scores.masked_fill(pad, float("-inf"))
        alpha = scores.softmax(dim=-1)                                       # α_tj
        return (alpha[:, :, None] * keys).sum(dim=1), alpha                  # c_t = Σ_j α_tj h_j

    def project(self, keys: Tensor) -> Tensor:
        return self.U(keys) if self.kind == "bahdanau" else self.W_a(keys) if self.kind == "general" else keys


class Seq2Seq(nn.Module):
    """GRU encoder-decoder over token ids; attention in ATTENTIONS ("none" = the fixed-vector bottleneck).

    none:      s_0 = h_S (last encoder state); the decoder input at t is [y_{t−1}; h_S] (Cho et al. 2014)
    bahdanau:  c_t from s_{t−1}; the decoder input is [y_{t−1}; c_t]; output from [s_t; c_t]
    dot/general (Luong): s_t from [y_{t−1}; h̃_{t−1}] (input feeding), c_t from s_t,
               h̃_t = tanh(W_c [c_t; s_t]) gives the output
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, emb: int = 32, hidden: int = 64,
                 attention: str = "bahdanau", pad_id: int = 0, mode: str = "gru"):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {attention!r}; valid: {', '.join(ATTENTIONS)}")
        self.attention_kind, self.pad_id, self.hidden = attention, pad_id, hidden
        self.src_embed = nn.Embedding(src_vocab, emb, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(tgt_vocab, emb, padding_idx=pad_id)
        self.encoder = Recurrent(mode, emb, hidden)
        self.decoder = Cell(mode, emb + hidden, hidden)
        self.attn = None if attention == "none" else Attention(attention, hidden, hidden)
        self.combine = nn.Linear(2 * hidden, hidden) if attention in ("dot", "general") else None
        self.out = nn.Linear(hidden if attention == "none" else 2 * hidden if attention == "bahdanau" else hidden,
                             tgt_vocab)

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """src (B, S) -> encoder states (B, S, H), last state (B, H), padding (B, S)."""
        pad = src == self.pad_id
        lengths = (~pad).sum(dim=1).clamp(min=1)
        states, h_n = self.encoder(self.src_embed(src), lengths)
        return states, h_n[-1], pad

    def _state_h(self, s):
        return s[0] if isinstance(s, tuple) else s

    def _start(self, states: Tensor, last: Tensor):
        """Decoder state s_0 = h_S, the first fed vector, and the keys' projection."""
        s = (last, torch.zeros_like(last)) if self.decoder.mode == "lstm" else last
        kp = self.attn.project(states) if self.attn is not None else None
        feed = last if self.attention_kind == "none" else torch.zeros_like(last)  # h_S, c_t or h̃_{t−1}
        return s, feed, kp

    def _step(self, y_emb: Tensor, s, feed: Tensor, states: Tensor, pad: Tensor, kp: Tensor | None):
        """One decoder step: y_{t−1} embedded (B, emb) -> logits (B, V), s_t, next feed, α_t (B, S)."""
        alpha = None
        if self.attention_kind == "bahdanau":
            feed, alpha = self.attn(self._state_h(s), states, pad, kp)        # c_t from s_{t−1}
        s = self.decoder(torch.cat([y_emb, feed], dim=-1), s)
        h = self._state_h(s)
        if self.attention_kind == "none":
            o = h
        elif self.attention_kind == "bahdanau":
            o = torch.cat([h, feed], dim=-1)                                  # [s_t; c_t]
        else:
            c, alpha = self.attn(h, states, pad, kp)                          # c_t from s_t
            o = feed = torch.tanh(self.combine(torch.cat([c, h], dim=-1)))    # h̃_t, fed next step
        return self.out(o), s, feed, alpha

    def decode_steps(self, tgt_in: Tensor, states: Tensor, last: Tensor, pad: Tensor,
                     keep_alpha: bool = False) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: tgt_in (B, T) (BOS + target[:-1]) -> logits (B, T, V), α (B, T, S)."""
        s, feed, kp = self._start(states, last)
        emb = self.tgt_embed(tgt_in)                                          # (B, T, emb)
        logits, alphas = [], []
        for t in range(tgt_in.size(1)):
            logit, s, feed, alpha = self._step(emb[:, t], s, feed, states, pad, kp)
            logits.append(logit)
            alphas.append(alpha)
        keep = keep_alpha and self.attn is not None
        return torch.stack(logits, 1), (torch.stack(alphas, 1) if keep else None)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        states, last, pad = self.encode(src)
        return self.decode_steps(tgt_in, states, last, pad)[0]

    def loss(self, src: Tensor, tgt_in: Tensor, tgt_out: Tensor) -> Tensor:
        """Cross-entropy of the next target token; padding in tgt_out is ignored."""
        logits = self(src, tgt_in)
        return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=self.pad_id)

    @torch.no_grad()
    def greedy(self, src: Tensor, bos: int, steps: int) -> tuple[Tensor, Tensor | None]:
        """Feed back the most likely token for `steps` steps -> tokens (B, steps), α (B, steps, S)."""
        states, last, pad = self.encode(src)
        s, feed, kp = self._start(states, last)
        y = torch.full((src.size(0),), bos, dtype=torch.long, device=src.device)
        tokens, alphas = [], []
        for _ in range(steps):
            logit, s, feed, alpha = self._step(self.tgt_embed(y), s, feed, states, pad, kp)
            y = logit.argmax(-1)
            tokens.append(y)
            alphas.append(alpha)
        return torch.stack(tokens, 1), (torch.stack(alphas, 1) if self.attn is not None else None)
