"""Reward model: scalar head on the last real token's final hidden state; Bradley–Terry loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from deepatlas.alignment.reward import RewardModel, bradley_terry_loss, pair_accuracy, real_mask, train_reward_model
from deepatlas.models.gpt import GPT, GPTConfig


def test_reward_reads_the_last_real_token_and_ignores_right_padding():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=10, block_size=12, n_layer=1, n_head=2, n_embd=8))
    rm = RewardModel(gpt)
    torch.nn.init.normal_(rm.head.weight)
    a = torch.tensor([[1, 2, 3, 0, 0]])
    b = torch.tensor([[1, 2, 3, 7, 7]])                         # same real tokens, other padding
    mask = real_mask([3], 5)
    torch.testing.assert_close(rm(a, mask), rm(b, mask))
    h = rm.gpt.ln_f(rm.gpt.blocks[0](rm.gpt.wte(a[:, :3]) + rm.gpt.wpe.weight[:3], causal=True))[:, -1]
    torch.testing.assert_close(rm(a, mask), rm.head(h).squeeze(-1))
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(rm.gpt.parameters(), gpt.parameters()))


def test_bradley_terry_loss_and_learning_a_rule():
    rc, rr = torch.tensor([2.0, -1.0]), torch.tensor([0.0, 1.0])
    want = -(torch.sigmoid(torch.tensor(2.0)).log() + torch.sigmoid(torch.tensor(-2.0)).log()) / 2
    torch.testing.assert_close(bradley_terry_loss(rc, rr), want)
    torch.testing.assert_close(bradley_terry_loss(rc, rr), F.softplus(rr - rc).mean())
    # pairs where the chosen sequence holds more 5s: the reward model learns to rank them
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, 5, (256, 6), generator=g)
    more = seq.clone()
    more[:, 2] = 5
    mask = torch.ones(256, 6, dtype=torch.long)
    rm = RewardModel(GPT(GPTConfig(vocab_size=6, block_size=8, n_layer=1, n_head=2, n_embd=16)))
    losses = train_reward_model(rm, (more[:200], mask[:200]), (seq[:200], mask[:200]), steps=60, lr=3e-3)
    assert losses[-1] < 0.3 < losses[0]
    assert pair_accuracy(rm, (more[200:], mask[200:]), (seq[200:], mask[200:])) > 0.9
