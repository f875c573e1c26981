"""S6: 2 real gloo processes on 127.0.0.1 take exactly the steps of one process.

The exact twin of 2 ranks is one process accumulating the same 2 shards (grad_accum=2): equal bit
for bit. One process on the whole batch at once differs only by fp32 summation order.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from deepatlas.deploy.distributed import (GPTJob, free_port, run_ranks, shard, train_gpt,
                                          train_gpt_many, zero_bytes_per_rank)

TINY = GPTJob(corpus_chars=20_000, n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=8, steps=6)


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _assert_identical(got: dict, want: dict) -> None:
    assert got["losses"] == want["losses"]
    assert _max_diff(got["weights"], want["weights"]) == 0.0


def test_shard_splits_rows_and_names_a_bad_batch():
    x, y = torch.arange(12).view(6, 2), torch.arange(6)
    x1, y1 = shard((x, y), 1, 3)
    assert torch.equal(x1, x[2:4]) and torch.equal(y1, y[2:4])
    assert torch.equal(torch.cat([shard(x, r, 3) for r in range(3)]), x)
    with pytest.raises(ValueError, match="multiple of 4"):
        shard(x, 0, 4)


def test_zero_bytes_per_rank_follows_rajbhandari_2020():
    psi, n = 1000, 4   # fp32 Adam: 4Ψ weights + 4Ψ grads + 8Ψ moments
    assert [zero_bytes_per_rank(psi, n, s) for s in range(4)] == [16000, 10000, 7000, 4000]
    # mixed precision (2 + 2 + 12 bytes/param), the paper's Ψ = 7.5B, N = 64 example: 120 GB -> 1.9 GB
    assert zero_bytes_per_rank(7.5e9, 64, 0, 2, 2, 12) / 1e9 == pytest.approx(120)
    assert zero_bytes_per_rank(7.5e9, 64, 3, 2, 2, 12) / 1e9 == pytest.approx(1.875)
    with pytest.raises(ValueError, match="stage=4"):
        zero_bytes_per_rank(psi, n, 4)


@pytest.mark.filterwarnings("ignore:resuming with a changed config")   # grad_accum 1 <-> 2: expected
def test_two_gloo_ranks_equal_one_process_and_checkpoints_cross(tmp_path):
    torch.set_num_threads(1)     # the ranks run one thread each: the same kernels as here
    const = replace(TINY, schedule="constant")
    one_writes, two_writes = tmp_path / "one", tmp_path / "two"
    train_gpt(None, replace(const, steps=3), accumulate_shards=2, checkpoint_dir=str(one_writes))
    ddp, fsdp, two_resumed, _ = run_ranks(train_gpt_many, 2, [
        {"job": TINY},
        {"job": replace(TINY, strategy="fsdp", clip=0.0)},
        {"job": const, "checkpoint_dir": str(one_writes), "resume": True},   # 1 process -> 2
        {"job": replace(const, steps=3), "checkpoint_dir": str(two_writes)},
    ], timeout_s=240)[0]

    accumulated = train_gpt(None, TINY, accumulate_shards=2)
    _assert_identical(ddp, accumulated)
    whole = train_gpt(None, TINY)              # one process, the 8 rows in one matmul
    assert max(abs(a - b) for a, b in zip(ddp["losses"], whole["losses"])) < 1e-5
    assert _max_diff(ddp["weights"], whole["weights"]) < 1e-5
    assert ddp["losses"][-1] < ddp["losses"][0] - 0.3       # and it does learn

    # FSDP (fully_shard): each rank stores half the parameters, and without gradient clipping
    # (whose norm is summed shard by shard) the steps are again bit for bit those of one process
    assert fsdp["local_numel"] <= accumulated["local_numel"] // 2 + 64
    _assert_identical(fsdp, train_gpt(None, replace(TINY, clip=0.0), accumulate_shards=2))

    straight = train_gpt(None, const, accumulate_shards=2)
    _assert_identical(two_resumed, straight)
    one_resumed = train_gpt(None, const, accumulate_shards=2, checkpoint_dir=str(two_writes), resume=True)
    _assert_identical(one_resumed, straight)                     # 2 processes -> 1


def test_a_dead_rank_fails_the_job_with_its_name_not_a_hang():
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"rank 1 of 2 died \(exit code 7\)"):
        run_ranks(train_gpt, 2, replace(TINY, crash_rank=1), timeout_s=120)
    assert time.monotonic() - start < 100


@pytest.mark.slow
def test_torchrun_launch_equals_one_process(tmp_path):
    out = tmp_path / "losses.json"
    args = ["--corpus-chars", "20000", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
            "--block-size", "16", "--batch-size", "8", "--steps", "4"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "deepatlas.deploy.distributed", *args, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    torch.set_num_threads(1)
    want = train_gpt(None, replace(TINY, steps=4), accumulate_shards=2)
    assert got["world"] == 2 and got["losses"] == want["losses"]
    assert _max_diff(torch.load(out.with_suffix(".pt"), weights_only=True), want["weights"]) == 0.0
