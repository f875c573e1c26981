"""PPO pieces: GAE = its direct sum, the clipped objectives = their definitions, KL estimators,
whitening, the value head, and one rollout + update on a tiny GPT."""
from __future__ import annotations

import math

import pytest
import torch

from deepatlas.alignment.ppo import (PolicyWithValue, PPOConfig, clipped_policy_loss, clipped_value_loss,
                                     gae, kl_k1, kl_k3, masked_whiten, ppo_step, rollout)
from deepatlas.models.gpt import GPT, GPTConfig


def _direct_gae(r, v, gamma, lam):
    """Â_t = Σ_l (γλ)^l δ_{t+l} with δ_t = r_t + γ V_{t+1} − V_t and V after the end = 0."""
    T = len(r)
    vv = list(v) + [0.0]
    delta = [r[t] + gamma * vv[t + 1] - vv[t] for t in range(T)]
    return [sum((gamma * lam) ** l * delta[t + l] for l in range(T - t)) for t in range(T)]


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 1.0), (0.99, 0.0), (0.8, 0.7)])
def test_gae_equals_direct_sum_on_masked_rows(gamma, lam):
    g = torch.Generator().manual_seed(0)
    B, T = 5, 11
    r, v = torch.randn(B, T, generator=g, dtype=torch.float64), torch.randn(B, T, generator=g, dtype=torch.float64)
    mask = torch.zeros(B, T, dtype=torch.float64)
    spans = [(0, 11), (3, 9), (5, 6), (2, 11), (7, 10)]      # one contiguous response per row
    for i, (s, e) in enumerate(spans):
        mask[i, s:e] = 1
    adv, ret = gae(r, v, mask, gamma, lam)
    for i, (s, e) in enumerate(spans):
        want = torch.tensor(_direct_gae(r[i, s:e].tolist(), v[i, s:e].tolist(), gamma, lam), dtype=torch.float64)
        torch.testing.assert_close(adv[i, s:e], want)
        torch.testing.assert_close(ret[i, s:e], want + v[i, s:e])
    assert bool((adv[mask == 0] == 0).all()) and bool((ret[mask == 0] == 0).all())
    # λ = 1, γ = 1: Â_t = Σ_{l≥t} r_l − V_t (Monte-Carlo return minus baseline)
    a1, _ = gae(r, v, mask, 1.0, 1.0)
    s, e = spans[1]
    torch.testing.assert_close(a1[1, s:e], r[1, s:e].flip(0).cumsum(0).flip(0) - v[1, s:e])


def test_clipped_policy_loss_is_its_definition():
    g = torch.Generator().manual_seed(1)
    logp, old, adv = torch.randn(4, 6, generator=g) * 0.3, torch.randn(4, 6, generator=g) * 0.3, torch.randn(4, 6, generator=g)
    mask = (torch.rand(4, 6, generator=g) > 0.3).float()
    eps = 0.2
    loss, frac = clipped_policy_loss(logp, old, adv, mask, eps)
    total, n, nclip = 0.0, 0, 0
    for i in range(4):
        for t in range(6):
            if mask[i, t]:
                rho = math.exp(float(logp[i, t] - old[i, t]))
                a = float(adv[i, t])
                clipped = min(max(rho, 1 - eps), 1 + eps)
                total += -min(rho * a, clipped * a)            # −min(ρA, clip(ρ)A) = max(−ρA, −clip(ρ)A)
                nclip += (clipped * a) < (rho * a)
                n += 1
    assert abs(float(loss) - total / n) < 1e-6
    assert abs(float(frac) - nclip / n) < 1e-6
    # gradient: zero where the clip is active and the ratio moved past it in the advantage's direction
    lp = logp.clone().requires_grad_(True)
    clipped_policy_loss(lp, old, adv, mask, eps)[0].backward()
    rho = (logp - old).exp()
    dead = ((rho > 1 + eps) & (adv > 0)) | ((rho < 1 - eps) & (adv < 0)) | (mask == 0)
    assert bool((lp.grad[dead] == 0).all()) and bool((lp.grad[~dead] != 0).all())


def test_clipped_value_loss_is_its_definition():
    v, old, ret = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.5, 0.5, 0.5]]), torch.tensor([[2.0, 1.0, 0.0]])
    mask = torch.ones(1, 3)
    # clip(v, old ± 0.2) = [0.7, 0.3, 0.7]; max of squared errors: [max(1, 1.69), max(1, .49), max(4, .49)]
    want = 0.5 * (1.69 + 1.0 + 4.0) / 3
    assert abs(float(clipped_value_loss(v, old, ret, mask, 0.2)) - want) < 1e-6


def test_kl_estimators():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(7), 0)
    q = torch.softmax(torch.randn(7), 0)
    exact = float((p * (p.log() - q.log())).sum())             # KL(p ‖ q)
    x = torch.multinomial(p, 400_000, replacement=True)
    k1, k3 = kl_k1(p.log()[x], q.log()[x]), kl_k3(p.log()[x], q.log()[x])
    assert abs(float(k1.mean()) - exact) < 0.02 and abs(float(k3.mean()) - exact) < 0.02
    assert float(k3.min()) >= 0 and float(k1.min()) < 0          # k3 ≥ 0 per sample; k1 is not
    assert float(k3.var()) < float(k1.var())                      # the lower-variance one
    lp = torch.tensor([-1.0, -2.0])
    torch.testing.assert_close(kl_k1(lp, lp), torch.zeros(2)) , torch.testing.assert_close(kl_k3(lp, lp), torch.zeros(2))


def test_masked_whiten():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, -7.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    w = masked_whiten(x, m)
    vals = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    torch.testing.assert_close(w[m.bool()], (vals - vals.mean()) / vals.std(), rtol=1e-5, atol=1e-5)
    assert bool((w[~m.bool()] == 0).all())


def test_value_head_reads_the_final_hidden_state_and_ppo_updates():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=13, block_size=24, n_layer=1, n_head=2, n_embd=16))
    pol = PolicyWithValue(gpt)
    ids = torch.randint(0, 13, (3, 8))
    logits, values = pol(ids)
    torch.testing.assert_close(logits, gpt(ids))
    assert values.shape == (3, 8) and bool((values == 0).all())          # zero-initialised head
    h = gpt.ln_f(gpt.blocks[0](gpt.wte(ids) + gpt.wpe.weight[:8], causal=True))
    torch.nn.init.normal_(pol.v_head.weight)
    torch.testing.assert_close(pol(ids)[1], pol.v_head(h).squeeze(-1))
    cfg = PPOConfig(rollouts=6, max_new_tokens=5, ppo_epochs=2, minibatch=3)
    ref = GPT(gpt.config).eval()
    ref.load_state_dict(gpt.state_dict())
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [1], [2, 2], [3, 4, 5]]
    ro = rollout(pol, ref, lambda ids, real: real.sum(1).float(), prompts, cfg, stop_id=12, pad_id=0, seed=0)
    for i, (p, r) in enumerate(zip(prompts, ro.responses)):
        assert int(ro.mask[i].sum()) == len(r) and ro.ids[i, :len(p)].tolist() == p
    torch.testing.assert_close(ro.logp, ro.ref_logp)                     # policy = reference before the update
    before = [p.detach().clone() for p in pol.parameters()]
    opt = torch.optim.Adam(pol.parameters(), lr=1e-2)
    stats = ppo_step(pol, opt, ro, cfg, torch.Generator().manual_seed(0))
    assert abs(stats["kl_k1"]) < 1e-6 and stats["response_tokens"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, pol.parameters()))
