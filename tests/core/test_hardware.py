import pytest
import torch

from deepatlas.core import hardware


def test_fast_bf16_follows_the_cpu_flags(monkeypatch):
    monkeypatch.delenv(hardware.ENV, raising=False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert not hardware.fast_bf16() and hardware.speed_dtype() == torch.float32
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16", "amx_tile"}))
    assert hardware.fast_bf16() and hardware.speed_dtype() == torch.bfloat16
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert hardware.fast_bf16()


def test_the_environment_overrides_and_bad_values_are_named(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset())
    monkeypatch.setenv(hardware.ENV, "1")
    assert hardware.fast_bf16() and hardware.speed_dtype() == torch.bfloat16
    monkeypatch.setenv(hardware.ENV, "yes")
    with pytest.raises(ValueError, match="DEEPATLAS_FAST_BF16='yes'"):
        hardware.fast_bf16()


def test_this_machines_flags_are_read():
    flags = hardware.cpu_flags()
    assert isinstance(flags, frozenset)
    if flags:                                  # Linux: /proc/cpuinfo lists the instruction sets
        assert "sse2" in flags or "fp" in flags or "neon" in flags or "asimd" in flags


def test_auto_precision_is_bf16_only_where_it_is_fast(monkeypatch):
    monkeypatch.setenv(hardware.ENV, "0")
    assert hardware.speed_precision("auto") == "fp32"
    assert hardware.speed_precision("auto", "cuda") == "bf16"
    assert hardware.speed_precision("bf16") == "bf16"          # a named precision is kept
    monkeypatch.setenv(hardware.ENV, "1")
    assert hardware.speed_precision("auto") == "bf16" and hardware.speed_precision("fp32") == "fp32"
    assert hardware.speed_precision("auto", "mps") == "fp32"
    with pytest.raises(ValueError, match="precision='half'; valid: auto"):
        hardware.speed_precision("half")
