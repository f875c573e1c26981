"""The training loop: exact resume, the NaN guard, accumulation, logging, precision errors."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from deepatlas.core.checkpoint import load_checkpoint
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, TrainingDiverged, make_optimizer, train


def make_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 32), nn.GELU(),
                         nn.Dropout(0.3), nn.Linear(32, 1))


def get_batch(step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + micro)
    x = torch.randn(16, 8, generator=g)
    return x, x.sum(dim=1, keepdim=True).sin()


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def config(steps: int = 12, **kw) -> TrainConfig:
    base = dict(steps=steps, lr=1e-2, min_lr=1e-3, warmup=3, schedule="cosine", optimizer="adamw",
                weight_decay=0.1, grad_accum=2, clip=0.5, progress=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_exact_resume(crash_and_resume):
    # the run dies right after the checkpoint at step 6; RNG state elsewhere in the process must not matter
    straight, straight_model, resumed, fresh = crash_and_resume(
        make_mlp, mse, get_batch, config(steps=12, checkpoint_every=6), 6,
        before_resume=lambda _: torch.manual_seed(1234))
    assert resumed.step == 12 and len(resumed.losses) == 12
    assert resumed.losses == straight.losses  # dropout masks, lr, Adam moments: all identical
    for (name, a), b in zip(straight_model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    with pytest.warns(UserWarning, match="no checkpoint"):
        out = train(make_mlp(), mse, get_batch, config(steps=2), checkpoint_dir=tmp_path, resume=True)
    assert out.step == 2
    assert load_checkpoint(tmp_path, make_mlp())["step"] == 2  # the final checkpoint


def test_nan_guard_stops_and_keeps_last_checkpoint(tmp_path):
    def loss_fn(model, batch):
        x, y = batch
        loss = mse(model, batch)
        return loss * float("nan") if x.attrs_step == 7 else loss

    def batch_with_step(step, micro):
        x, y = get_batch(step, micro)
        x.attrs_step = step  # tag the batch so loss_fn knows which step it belongs to
        return x, y

    model = make_mlp()
    with pytest.raises(TrainingDiverged, match=r"nan at step 7\b") as err:
        train(model, loss_fn, batch_with_step, config(steps=20, checkpoint_every=5), checkpoint_dir=tmp_path)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000005"]
    state = load_checkpoint(tmp_path, make_mlp())
    assert state["step"] == 5 and len(state["extra"]["losses"]) == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())  # stopped before the update


def test_grad_accum_equals_one_big_batch():
    """Two micro-batches of 16 with loss/2 give the gradient of one batch of 32 (no dropout)."""
    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def big_batch(step, micro):
        a, b = get_batch(step, 0), get_batch(step, 1)
        return torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])

    a, b = net(), net()
    cfg = config(steps=3, weight_decay=0.0)
    la = train(a, mse, get_batch, cfg).losses
    lb = train(b, mse, big_batch, config(steps=3, weight_decay=0.0, grad_accum=1)).losses
    torch.testing.assert_close(torch.tensor(la), torch.tensor(lb))
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_matches_a_bare_pytorch_loop():
    """train() with SGD+momentum, constant lr, clipping = the textbook loop written out by hand."""
    cfg = config(steps=5, optimizer="sgd", momentum=0.9, schedule="constant", warmup=0, grad_accum=1,
                 clip=0.1, weight_decay=0.0)
    ours = make_mlp()
    ours_losses = train(ours, mse, get_batch, cfg).losses
    ref = make_mlp()
    torch.manual_seed(cfg.seed)
    opt = torch.optim.SGD(ref.parameters(), lr=cfg.lr, momentum=0.9)
    ref_losses = []
    for step in range(cfg.steps):
        loss = mse(ref, get_batch(step, 0))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.clip)
        opt.step()
        opt.zero_grad()
        ref_losses.append(loss.item())
    assert ours_losses == ref_losses
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_weight_decay_only_on_matrices():
    opt = make_optimizer(make_mlp(), config(weight_decay=0.1))
    decay = {g["weight_decay"]: [p.dim() for p in g["params"]] for g in opt.param_groups}
    assert decay == {0.1: [2, 2, 2], 0.0: [1, 1, 1]}


def test_logs_evals_and_schedule(tmp_path):
    run = Run(tmp_path / "run", echo=False)
    out = train(make_mlp(), mse, get_batch, config(steps=9, log_every=4, eval_every=4), run=run,
                evaluate=lambda m: {"eval_loss": mse(m, get_batch(10_000, 0)).item(), "training": m.training})
    run.close()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in lines if "loss" in r]
    assert logged == [0, 4, 8]
    assert [r["step"] for r in out.evals] == [4, 8, 9]
    assert not any(e["training"] for e in out.evals)  # evaluate sees the model in eval mode
    assert lines[0]["lr"] == pytest.approx(1e-2 / 3)  # warmup: lr · (0 + 1) / 3
    assert out.samples_per_s > 0 and out.seconds > 0


def test_bf16_on_cpu_trains():
    out = train(make_mlp(), mse, get_batch, config(steps=4, precision="bf16"))
    assert all(torch.isfinite(torch.tensor(out.losses)))


def test_bad_settings_name_the_valid_ones():
    with pytest.raises(ValueError, match="fp16.*needs a cuda device"):
        train(make_mlp(), mse, get_batch, config(precision="fp16"))
    with pytest.raises(ValueError, match="valid: adamw, adam, sgd"):
        train(make_mlp(), mse, get_batch, config(optimizer="lion"))
    with pytest.raises(ValueError, match="valid: constant, cosine, linear, inverse_sqrt"):
        train(make_mlp(), mse, get_batch, config(schedule="step"))


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    train(make_mlp(), mse, get_batch, config(steps=3, log_every=1, progress=True))
    shown = capsys.readouterr().err
    assert "3/3" in shown and "loss=" in shown and "lr=" in shown and "samples_s=" in shown
    train(make_mlp(), mse, get_batch, config(steps=3, log_every=1, progress=False))
    assert capsys.readouterr().err == ""


def test_muon_optimizer_takes_hidden_matrices_and_resumes_exactly(crash_and_resume):
    from deepatlas.core.train import muon_matrices
    from deepatlas.models.gpt import GPT, GPTConfig

    gpt = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    names = {id(p): n for n, p in gpt.named_parameters()}
    chosen = sorted(names[id(p)] for p in muon_matrices(gpt))
    assert "wte.weight" not in chosen and "wpe.weight" not in chosen and len(chosen) == 6  # q k v o up down
    cfg = config(steps=8, optimizer="muon", muon_lr=0.02, checkpoint_every=4, grad_accum=1)
    straight, straight_model, resumed, fresh = crash_and_resume(make_mlp, mse, get_batch, cfg, 4)
    assert resumed.losses == straight.losses
    for a, b in zip(straight_model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
