"""Checkpoints: exact round trip, tied weights, atomic writes, clear errors on damage."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from deepatlas.core import checkpoint as ckpt
from deepatlas.core.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint


class TiedLM(nn.Module):
    """GPT-style weight tying: the output head is the embedding matrix (Press & Wolf 2017)."""

    def __init__(self, vocab: int = 11, dim: int = 6):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.ln = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        self.register_buffer("pos", torch.arange(4.0))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.ln(self.wte(idx)))


def trained(seed: int = 0) -> tuple[TiedLM, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = TiedLM()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(3):
        model(torch.tensor([[1, 2, 3]])).logsumexp(-1).sum().backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def test_round_trip_is_exact_with_tied_weights_and_rng(tmp_path):
    model, opt = trained()
    save_checkpoint(tmp_path, model, opt, 3, {"lr": 1e-2}, {"losses": [3.0, 2.5, 2.0]})
    expected = (torch.rand(4), random.random(), np.random.rand())

    other, other_opt = trained(seed=5)
    torch.manual_seed(77), random.seed(77), np.random.seed(77)
    state = load_checkpoint(tmp_path, other, other_opt)
    got = (torch.rand(4), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]
    assert state["step"] == 3 and state["config"] == {"lr": 1e-2} and state["extra"]["losses"] == [3.0, 2.5, 2.0]
    assert other.lm_head.weight is other.wte.weight  # still tied after loading
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    sa, sb = opt.state_dict(), other_opt.state_dict()
    assert sb["param_groups"] == sa["param_groups"]  # betas come back as a tuple
    for i in sa["state"]:
        for key in sa["state"][i]:
            assert torch.equal(sa["state"][i][key], sb["state"][i][key]), (i, key)
    # the tie is stored once
    with open(latest_checkpoint(tmp_path) / "meta.json") as f:
        assert json.load(f)["model_aliases"] == {"lm_head.weight": "wte.weight"}


def test_rng_restored(tmp_path):
    model, opt = trained()
    save_checkpoint(tmp_path, model, opt, 1)
    after = torch.rand(3)
    torch.rand(100)
    load_checkpoint(tmp_path, model, opt)
    assert torch.equal(torch.rand(3), after)


def test_older_checkpoints_pruned_and_latest_loaded(tmp_path):
    model, opt = trained()
    for step in (5, 10, 15):
        save_checkpoint(tmp_path, model, opt, step, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000010", "step-00000015"]
    assert load_checkpoint(tmp_path, model)["step"] == 15


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model, opt = trained()
    save_checkpoint(tmp_path, model, opt, 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.wte.weight.add_(1.0)

    real_replace = ckpt.os.replace

    def crash_on_meta(src, dst):  # the optimizer file is written, then the process "dies"
        if str(dst).endswith("meta.json"):
            raise OSError("simulated power cut")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash_on_meta)
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint(tmp_path, model, opt, 10)
    monkeypatch.undo()

    def crash_on_tensors(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash_on_tensors)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, model, opt, 10)
    monkeypatch.undo()

    fresh, fresh_opt = trained(seed=3)
    assert load_checkpoint(tmp_path, fresh, fresh_opt)["step"] == 5
    for key, value in before.items():
        assert torch.equal(fresh.state_dict()[key], value), key
    save_checkpoint(tmp_path, model, opt, 10)  # the next save cleans up and succeeds
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    assert load_checkpoint(tmp_path, fresh)["step"] == 10


def saved(tmp_path):
    model, opt = trained()
    save_checkpoint(tmp_path, model, opt, 7)
    return model, opt, latest_checkpoint(tmp_path)


def assert_one_line_error(tmp_path, model, opt, file_name: str, what: str):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path, model, opt)
    message = str(err.value)
    assert "\n" not in message and file_name in message and what in message, message


def test_truncated_safetensors(tmp_path):
    model, opt, folder = saved(tmp_path)
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-20])
    assert_one_line_error(tmp_path, model, opt, "model.safetensors", "truncated")


def test_bit_flip_in_safetensors(tmp_path):
    model, opt, folder = saved(tmp_path)
    path = folder / "optimizer.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_one_line_error(tmp_path, model, opt, "optimizer.safetensors", "corrupt")


def test_garbage_json(tmp_path):
    model, opt, folder = saved(tmp_path)
    (folder / "meta.json").write_text('{"format": "deepatlas-checkpoint-1", "step": ')
    assert_one_line_error(tmp_path, model, opt, "meta.json", "not valid JSON")


def test_deleted_file(tmp_path):
    model, opt, folder = saved(tmp_path)
    (folder / "optimizer.safetensors").unlink()
    assert_one_line_error(tmp_path, model, opt, "optimizer.safetensors", "missing")


def test_no_checkpoint_and_wrong_model(tmp_path):
    model, opt = trained()
    assert_one_line_error(tmp_path, model, opt, "latest", "no checkpoint has been saved")
    save_checkpoint(tmp_path, model, opt, 1)
    with pytest.raises(CheckpointError, match=r"does not fit the model: missing keys \['0.bias', '0.weight'\]"):
        load_checkpoint(tmp_path, nn.Sequential(nn.Linear(2, 2)))


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model, opt = trained()
    save_checkpoint(tmp_path, model, opt, 1)

    def forbidden(*args, **kwargs):
        raise AssertionError("load_checkpoint must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr("pickle.load", forbidden)
    monkeypatch.setattr("pickle.loads", forbidden)
    load_checkpoint(tmp_path, model, opt)
