"""Configs are plain dataclasses; the command line changes them with `key=value`.

    deepatlas run gpt-pretrain n_layer=2 train.steps=500 train.lr=3e-4

Each override is checked against the dataclass: an unknown key names the valid keys (and the
closest one), a value that does not parse as the field's type names that type.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from typing import Any, Iterable


class ConfigError(ValueError):
    """A bad key or value in a config override."""


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_value(text: str, kind: Any, key: str) -> Any:
    """Turn the text after `=` into a value of the field's annotated type."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # Optional[X] / X | None
        if text.lower() in ("none", "null"):
            return None
        inner = [a for a in args if a is not type(None)]
        return _parse_value(text, inner[0], key)
    if origin is typing.Literal:
        if text not in args:
            raise ConfigError(f"{key}={text!r}: must be one of {', '.join(map(str, args))}")
        return text
    try:
        if kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(float(text)) if "e" in text.lower() and float(text).is_integer() else int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        if origin in (tuple, list):
            items = json.loads(text) if text.strip().startswith("[") else [t for t in text.split(",") if t]
            elem = args[0] if args else str
            vals = [_parse_value(str(v), elem, f"{key}[{i}]") for i, v in enumerate(items)]
            return tuple(vals) if origin is tuple else vals
    except ConfigError:
        raise
    except (ValueError, json.JSONDecodeError):
        name = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{key}={text!r}: expected a value of type {name}") from None
    raise ConfigError(f"{key}: fields of type {kind} cannot be set from the command line")


def valid_keys(cfg: Any, prefix: str = "") -> list[str]:
    """All settable dotted keys of a (nested) dataclass config."""
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += valid_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def override(cfg: Any, assignments: Iterable[str]) -> Any:
    """Return a copy of `cfg` with each `a.b=value` applied. Raises ConfigError on a bad one."""
    cfg = dataclasses.replace(cfg)
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"{item!r}: overrides are written key=value, e.g. steps=100")
        key, text = item.split("=", 1)
        key = key.strip()
        set_key(cfg, key, text, root=cfg)
    return cfg


def set_key(cfg: Any, key: str, text: str, root: Any | None = None, full_key: str | None = None) -> None:
    """Set dotted `key` (relative to `cfg`) from its text; errors name `full_key` from the root."""
    root = cfg if root is None else root
    full_key = key if full_key is None else full_key
    head, _, rest = key.partition(".")
    names = {f.name for f in dataclasses.fields(cfg)}
    if head not in names:
        keys = valid_keys(root)
        close = difflib.get_close_matches(full_key, keys, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown config key {full_key!r}.{hint} Valid keys: {', '.join(keys)}")
    current = getattr(cfg, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{full_key!r}: {head!r} is a value, not a group of settings")
        child = dataclasses.replace(current)
        setattr(cfg, head, child)
        set_key(child, rest, text, root, full_key)
        return
    if dataclasses.is_dataclass(current):
        first = dataclasses.fields(current)[0].name
        raise ConfigError(f"{full_key!r} is a group; set one of its keys, e.g. {full_key}.{first}=...")
    setattr(cfg, head, _parse_value(text, _field_types(type(cfg))[head], full_key))


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict) -> Any:
    """Rebuild a (nested) dataclass from `to_dict` output; unknown keys are an error."""
    hints = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise ConfigError(f"unknown key {key!r} for {cls.__name__}; valid: {', '.join(hints)}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = from_dict(kind, value)
        elif typing.get_origin(kind) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)
