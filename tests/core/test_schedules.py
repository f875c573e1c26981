"""Learning-rate schedules: closed-form values, and torch.optim.lr_scheduler's versions."""
from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler

from deepatlas.core.schedules import lr_at
from deepatlas.core.train import TrainConfig

LR, MIN_LR, WARMUP, STEPS = 0.1, 0.01, 5, 40


def cfg(schedule: str, warmup: int = WARMUP) -> TrainConfig:
    return TrainConfig(steps=STEPS, lr=LR, min_lr=MIN_LR, warmup=warmup, schedule=schedule)


def torch_lrs(make_scheduler, steps: int = STEPS) -> list[float]:
    """The lr torch's scheduler gives each of `steps` updates."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    sched = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def warmup_then(after):
    # LinearLR from 1/warmup to 1 over warmup-1 updates is lr·(t+1)/warmup
    return lambda opt: lr_scheduler.SequentialLR(
        opt, [lr_scheduler.LinearLR(opt, 1 / WARMUP, 1.0, total_iters=WARMUP - 1), after(opt)],
        milestones=[WARMUP])


def ours(schedule: str, steps: int = STEPS) -> list[float]:
    return [lr_at(cfg(schedule), t) for t in range(steps)]


def test_closed_form_values():
    c = cfg("cosine")
    assert lr_at(c, 0) == pytest.approx(LR / 5)
    assert lr_at(c, WARMUP - 1) == pytest.approx(LR)
    assert lr_at(c, WARMUP) == pytest.approx(LR)  # decay starts at p = 0
    # p = 7 / 35 = 0.2 of the decay done: η = η_min + ½ (η_max − η_min)(1 + cos(0.2 π))
    assert lr_at(c, WARMUP + 7) == pytest.approx(MIN_LR + 0.5 * (LR - MIN_LR) * (1 + math.cos(0.2 * math.pi)))
    assert lr_at(c, STEPS) == pytest.approx(MIN_LR) and lr_at(c, 10 * STEPS) == pytest.approx(MIN_LR)
    lin = cfg("linear")
    assert lr_at(lin, WARMUP + 7) == pytest.approx(LR + (MIN_LR - LR) * 7 / 35)
    assert lr_at(cfg("constant"), 2) == pytest.approx(LR * 3 / 5) and lr_at(cfg("constant"), 30) == LR
    isq = cfg("inverse_sqrt")
    assert lr_at(isq, WARMUP - 1) == pytest.approx(LR)  # the peak is lr, at the end of warmup
    assert lr_at(isq, 4 * WARMUP - 1) == pytest.approx(LR / 2)  # 1/√s: four times later, half
    assert lr_at(TrainConfig(lr=1.0, warmup=0, schedule="inverse_sqrt"), 99) == pytest.approx(0.1)


def test_cosine_equals_torch_warmup_then_cosine_annealing():
    expected = torch_lrs(warmup_then(lambda opt: lr_scheduler.CosineAnnealingLR(
        opt, T_max=STEPS - WARMUP, eta_min=MIN_LR)))
    torch.testing.assert_close(ours("cosine"), expected, rtol=1e-6, atol=1e-9)


def test_linear_equals_torch_linear_lr():
    expected = torch_lrs(warmup_then(lambda opt: lr_scheduler.LinearLR(
        opt, 1.0, MIN_LR / LR, total_iters=STEPS - WARMUP)))
    torch.testing.assert_close(ours("linear"), expected, rtol=1e-6, atol=1e-9)


def test_constant_without_warmup_equals_torch_constant():
    expected = torch_lrs(lambda opt: lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0))
    assert [lr_at(cfg("constant", warmup=0), t) for t in range(STEPS)] == expected


def test_inverse_sqrt_is_vaswani_eq3_rescaled():
    d_model = 512
    # Vaswani et al. 2017 eq. (3), written as in the paper with s = t + 1
    noam = lambda t: d_model ** -0.5 * min((t + 1) ** -0.5, (t + 1) * WARMUP ** -1.5)  # noqa: E731
    peak = noam(WARMUP - 1)
    expected = torch_lrs(lambda opt: lr_scheduler.LambdaLR(opt, lambda t: noam(t) / peak))
    torch.testing.assert_close(ours("inverse_sqrt"), expected, rtol=1e-6, atol=1e-12)


def test_unknown_schedule_names_the_valid_ones():
    with pytest.raises(ValueError, match="'cosine_restarts'.*valid: constant, cosine, linear, inverse_sqrt"):
        lr_at(cfg("cosine_restarts"), 0)


def test_wsd_warms_up_holds_then_decays_linearly_over_the_cooldown():
    from deepatlas.core.schedules import wsd

    lrs = [wsd(t, 1.0, 0.1, 10, 100, cooldown=0.2) for t in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == 1.0          # (t+1)/warmup
    assert all(lr == 1.0 for lr in lrs[10:80])                       # stable until step 80
    assert lrs[90] == pytest.approx(1.0 + (0.1 - 1.0) * 10 / 20)     # straight line to min_lr at 100
    assert all(a >= b for a, b in zip(lrs[80:], lrs[81:]))
    from types import SimpleNamespace
    cfg = SimpleNamespace(lr=1.0, min_lr=0.1, warmup=10, steps=100, schedule="wsd", cooldown=0.5)
    assert lr_at(cfg, 60) < 1.0 == lr_at(cfg, 49)                    # the config's cooldown is used
