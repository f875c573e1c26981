"""RNN / LSTM / GRU from their gate equations equal torch.nn's (outputs, final states, gradients,
variable-length batches); seq2seq attention weights and greedy decoding are consistent."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepatlas.models.rnn import Attention, Cell, Recurrent, Seq2Seq

TORCH_CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}
TORCH_RNNS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_cell_equals_torch_cell(mode):
    torch.manual_seed(0)
    ref = TORCH_CELLS[mode](5, 7)
    ours = Cell(mode, 5, 7)
    ours.load_state_dict(ref.state_dict())                 # same parameter names
    x, h = torch.randn(3, 5), torch.randn(3, 7)
    state = (h, torch.randn(3, 7)) if mode == "lstm" else h
    got, want = ours(x, state), ref(x, state)
    if mode == "lstm":
        torch.testing.assert_close(got[0], want[0])
        torch.testing.assert_close(got[1], want[1])
    else:
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("fast", [True, False])
def test_recurrent_equals_torch_on_a_packed_variable_length_batch(mode, bidirectional, fast):
    torch.manual_seed(1)
    ref = TORCH_RNNS[mode](4, 6, num_layers=2, bidirectional=bidirectional, batch_first=True)
    ours = Recurrent(mode, 4, 6, num_layers=2, bidirectional=bidirectional, fast=fast).load_torch(ref)
    lengths = torch.tensor([7, 3, 5, 1])
    x = torch.randn(4, 7, 4, requires_grad=True)
    n = 2 * (2 if bidirectional else 1)
    h0 = torch.randn(n, 4, 6)
    state = (h0, torch.randn(n, 4, 6)) if mode == "lstm" else h0
    out_ref, fin_ref = ref(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), state)
    out_ref = pad_packed_sequence(out_ref, batch_first=True, total_length=7)[0]
    out, fin = ours(x, lengths, state)
    torch.testing.assert_close(out, out_ref, atol=1e-6, rtol=1e-5)   # padded steps are 0 in both
    for a, b in zip(fin if mode == "lstm" else [fin], fin_ref if mode == "lstm" else [fin_ref]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # gradients w.r.t. the input and the weights
    w = torch.randn_like(out)
    gx, = torch.autograd.grad((out * w).sum(), x, retain_graph=True)
    gx_ref, = torch.autograd.grad((out_ref * w).sum(), x, retain_graph=True)
    torch.testing.assert_close(gx, gx_ref, atol=1e-5, rtol=1e-4)
    g = torch.autograd.grad((out * w).sum(), ours.cells[-1].weight_hh)[0]
    name = "weight_hh_l1" + ("_reverse" if bidirectional else "")
    g_ref = torch.autograd.grad((out_ref * w).sum(), getattr(ref, name))[0]
    torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-4)


def test_lengths_are_checked():
    with pytest.raises(ValueError, match="lengths must be in 1..5"):
        Recurrent("gru", 3, 4)(torch.randn(2, 5, 3), torch.tensor([6, 2]))
    with pytest.raises(ValueError, match="unknown cell 'elman'"):
        Cell("elman", 3, 4)


@pytest.mark.parametrize("kind", ["bahdanau", "dot", "general"])
def test_attention_weights_are_a_distribution_over_real_positions(kind):
    torch.manual_seed(2)
    attn = Attention(kind, 8, 8)
    keys = torch.randn(2, 5, 8)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    ctx, alpha = attn(torch.randn(2, 8), keys, pad)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2))
    assert bool((alpha[1, 3:] == 0).all())
    torch.testing.assert_close(ctx, (alpha[:, :, None] * keys).sum(1))
    if kind == "dot":                                      # e_tj = s·h_j, by hand
        q = torch.randn(2, 8)
        want = (keys @ q[:, :, None]).squeeze(-1).softmax(-1)
        torch.testing.assert_close(attn(q, keys)[1], want)


@pytest.mark.parametrize("attention", ["none", "bahdanau", "dot", "general"])
def test_greedy_equals_teacher_forcing_on_its_own_output(attention):
    torch.manual_seed(3)
    model = Seq2Seq(12, 12, emb=8, hidden=16, attention=attention).eval()
    src = torch.randint(3, 12, (3, 6))
    src[1, 4:] = 0                                         # a padded source
    tokens, alpha = model.greedy(src, bos=1, steps=5)
    tgt_in = torch.cat([torch.ones(3, 1, dtype=torch.long), tokens[:, :-1]], 1)
    with torch.no_grad():
        logits = model(src, tgt_in)
    assert torch.equal(logits.argmax(-1), tokens)
    if attention == "none":
        assert alpha is None
    else:
        assert alpha.shape == (3, 5, 6) and bool((alpha[1, :, 4:] == 0).all())
