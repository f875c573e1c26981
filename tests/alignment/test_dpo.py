"""DPO / IPO / hinge losses equal trl 1.16's DPOTrainer loss on the same log-probabilities.

trl computes its loss inside DPOTrainer._compute_loss from a model output's per-token log-probs;
we run that method unchanged on a stand-in trainer whose "model" returns the per-token
log-probabilities we chose, with the reference log-probs precomputed (trl's precompute_ref_logps)."""
from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from deepatlas.alignment.dpo import LOSS_TYPES, dpo_loss, pad_rows, response_logps

trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")


class _Accel:
    device = torch.device("cpu")

    @staticmethod
    def gather_for_metrics(t):
        return t

    gather = gather_for_metrics


def _trl_loss(per_token_logps, completion_mask, ref_chosen, ref_rejected, beta, loss_type):
    """trl's DPOTrainer._compute_loss on a batch [chosen; rejected] of given per-token log-probs."""
    B2, T = completion_mask.shape
    out = SimpleNamespace(log_probs=per_token_logps, entropy=torch.zeros(B2, T - 1),
                          mean_logits=torch.zeros(B2, T - 1), is_top1=torch.zeros(B2, T - 1, dtype=torch.bool))
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=_Accel(), aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0],
        beta=beta, use_weighting=False, label_smoothing=0.0, _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.zeros(B2, T, dtype=torch.long), "attention_mask": torch.ones(B2, T),
              "completion_mask": completion_mask, "ref_chosen_logps": ref_chosen,
              "ref_rejected_logps": ref_rejected}
    return trl_dpo.DPOTrainer._compute_loss(trainer, lambda **kw: out, inputs, False)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5, 2.0])
def test_dpo_loss_equals_trl(loss_type, beta):
    g = torch.Generator().manual_seed(int(beta * 100))
    B, T = 4, 9
    completion_mask = torch.zeros(2 * B, T, dtype=torch.long)
    for i in range(2 * B):                                    # prompt of 3 tokens, responses of varying length
        completion_mask[i, 3:3 + 2 + i % 4] = 1
    per_token = -torch.rand(2 * B, T - 1, generator=g) * 3 * completion_mask[:, 1:]  # 0 off the response
    ref = -torch.rand(2 * B, generator=g) * 8
    theirs = _trl_loss(per_token, completion_mask, ref[:B], ref[B:], beta, loss_type)
    seq = per_token.sum(1)
    n = completion_mask.sum(1)
    losses, rc, rr = dpo_loss(seq[:B], seq[B:], ref[:B], ref[B:], beta, loss_type, n[:B], n[B:])
    torch.testing.assert_close(losses.mean(), theirs, rtol=1e-6, atol=1e-7)
    # the implicit reward β log π/π_ref, as trl logs it
    torch.testing.assert_close(rc, beta * (seq[:B] - ref[:B]))
    torch.testing.assert_close(rr, beta * (seq[B:] - ref[B:]))


def test_implicit_reward_is_beta_log_ratio_of_a_model():
    torch.manual_seed(0)
    from deepatlas.models.gpt import GPT, GPTConfig

    pol, ref = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8)), \
        GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))
    ids, mask = pad_rows([([1, 2, 3, 4], [0, 0, 1, 1]), ([5, 6, 7], [0, 1, 1])], 0)
    lp = response_logps(pol, ids, mask)
    # direct: log π(y|x) = Σ over response targets of log softmax
    for row, (toks, m) in enumerate([([1, 2, 3, 4], [0, 0, 1, 1]), ([5, 6, 7], [0, 1, 1])]):
        logits = pol(torch.tensor([toks[:-1]])).log_softmax(-1)[0].detach()
        want = sum(float(logits[t - 1, toks[t]]) for t in range(1, len(toks)) if m[t])
        assert abs(float(lp[row].detach()) - want) < 1e-5
    beta = 0.3
    _, rc, _ = dpo_loss(lp, lp, response_logps(ref, ids, mask), response_logps(ref, ids, mask), beta)
    torch.testing.assert_close(rc, beta * (lp - response_logps(ref, ids, mask)).detach())


def test_bad_arguments_are_named():
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(z, z, z, z, loss_type="kto")
    with pytest.raises(ValueError, match="chosen_tokens"):
        dpo_loss(z, z, z, z, loss_type="ipo")
