"""Config overrides from the command line: nested keys, typed parsing, helpful errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from deepatlas.core.config import ConfigError, from_dict, override, to_dict, valid_keys
from deepatlas.core.train import TrainConfig


@dataclass
class Model:
    n_layer: int = 2
    dims: tuple[int, ...] = (4, 8)


@dataclass
class Config:
    steps: int = 100
    rate: float = 0.5
    fast: bool = False
    mode: Literal["plain", "fused"] = "plain"
    name: Optional[str] = None
    model: Model = field(default_factory=Model)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=50, lr=1e-3))


def test_nested_and_typed_overrides():
    cfg = override(Config(), ["steps=7", "rate=2e-3", "fast=true", "mode=fused", "name=none",
                              "model.n_layer=6", "model.dims=1,2,3", "train.lr=3e-4", "train.progress=off",
                              "train.steps=1e3"])
    assert (cfg.steps, cfg.rate, cfg.fast, cfg.mode, cfg.name) == (7, 2e-3, True, "fused", None)
    assert cfg.model == Model(n_layer=6, dims=(1, 2, 3))
    assert (cfg.train.lr, cfg.train.progress, cfg.train.steps) == (3e-4, False, 1000)
    assert override(Config(), ["model.dims=[5, 6]"]).model.dims == (5, 6)


def test_override_does_not_touch_the_original():
    base = Config()
    override(base, ["model.n_layer=9", "train.lr=1.0"])
    assert base.model.n_layer == 2 and base.train.lr == 1e-3


def test_unknown_key_names_valid_keys_and_the_close_match():
    with pytest.raises(ConfigError) as err:
        override(Config(), ["trian.lr=1"])
    message = str(err.value)
    assert "'trian.lr'" in message and "Did you mean 'train.lr'" in message
    for key in ("steps", "model.n_layer", "train.warmup", "train.grad_accum"):
        assert key in message
    with pytest.raises(ConfigError, match="Did you mean 'model.n_layer'"):
        override(Config(), ["model.n_layers=3"])


@pytest.mark.parametrize("item, named, type_name", [
    ("steps=ten", "steps='ten'", "int"), ("rate=fast", "rate='fast'", "float"),
    ("fast=maybe", "fast='maybe'", "bool"), ("model.dims=a,b", "model.dims[0]='a'", "int")])
def test_bad_value_names_the_key_value_and_type(item, named, type_name):
    with pytest.raises(ConfigError, match=f"expected a value of type {type_name}") as err:
        override(Config(), [item])
    assert named in str(err.value)


def test_literal_names_the_choices_and_other_mistakes():
    with pytest.raises(ConfigError, match="must be one of plain, fused"):
        override(Config(), ["mode=turbo"])
    with pytest.raises(ConfigError, match="key=value"):
        override(Config(), ["steps"])
    with pytest.raises(ConfigError, match="is a group"):
        override(Config(), ["train=3"])


def test_round_trip_through_dict():
    cfg = override(Config(), ["model.dims=3", "train.lr=0.1"])
    assert from_dict(Config, to_dict(cfg)) == cfg
    assert "train.checkpoint_every" in valid_keys(cfg)


def test_bad_nested_value_names_the_full_key():
    with pytest.raises(ConfigError, match=r"train\.lr='abc'"):
        override(Config(), ["train.lr=abc"])
