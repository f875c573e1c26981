"""`deepatlas run NAME --resume RUN_DIR` continues a killed run exactly.

A real subprocess is killed with SIGKILL (no cleanup, no flush) once mid-training and once in
the middle of writing a checkpoint; the resumed run must end with the same weights, metrics,
loss log and sample as a run that was never interrupted, and nothing saved before the kill may
be lost. Folders of another experiment, of another config, or of nothing are refused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deepatlas.core.registry import ResumeError, find, read_resumable

# a small L2 run: 120 steps, a checkpoint every 40 (about 5 s of CPU)
ARGS = ["gpt-pretrain", "--quick", "train.steps=120", "train.checkpoint_every=40",
        "train.eval_every=40", "corpus_chars=120000", "sample_chars=40"]
TIMING = ("train_seconds", "train_seconds_seeds", "samples_per_s")


def deepatlas(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "deepatlas", *args], capture_output=True, text=True,
                          env=env, timeout=300, **kw)


def outcome(run_dir: Path) -> tuple[dict, dict, list, str]:
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = {k: v for k, v in summary["metrics"].items() if k not in TIMING}
    weights = load_file(str(run_dir / "model" / "model.safetensors"))
    log = [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"}
           for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return metrics, weights, log, (run_dir / "sample.txt").read_text()


def assert_same(a: Path, b: Path) -> None:
    ma, wa, la, sa = outcome(a)
    mb, wb, lb, sb = outcome(b)
    assert ma == mb
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert la == lb, "the resumed metrics.jsonl differs from the uninterrupted one"
    assert sa == sb


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    done = deepatlas("run", *ARGS, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_resume_after_sigkill_mid_training_equals_uninterrupted(straight, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "deepatlas", "run", *ARGS, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    latest = out / "checkpoint" / "latest"
    deadline = time.time() + 240
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest.exists(), "the run ended before its first checkpoint; nothing to resume"
    step_at_kill = int(latest.read_text().strip().split("-")[1])
    assert not (out / "summary.json").exists() or step_at_kill == 120
    resumed = deepatlas("run", "gpt-pretrain", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "summary.json").read_text()).get("resumed") is True
    assert_same(straight, out)


KILL_IN_SECOND_SAVE = """
import os, signal, sys
import deepatlas.core.checkpoint as ck
real, calls = ck._save_tensors, []
def dying(tensors, path):
    real(tensors, path)
    calls.append(path)
    if len(calls) == 3:   # checkpoint 1 wrote model + optimizer; die after checkpoint 2's model file
        os.kill(os.getpid(), signal.SIGKILL)
ck._save_tensors = dying
from deepatlas.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_resume_after_sigkill_mid_checkpoint_write(straight, tmp_path):
    out = tmp_path / "torn"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    died = subprocess.run([sys.executable, "-c", KILL_IN_SECOND_SAVE, "run", *ARGS, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stderr
    ckpt = out / "checkpoint"
    assert (ckpt / "latest").read_text().strip() == "step-00000040", "the complete checkpoint was lost"
    assert any(p.name.startswith(".tmp-") for p in ckpt.iterdir()), "the kill did not land mid-write"
    resumed = deepatlas("run", "gpt-pretrain", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert not any(p.name.startswith(".tmp-") for p in ckpt.iterdir())
    assert_same(straight, out)


def test_resume_refuses_other_experiment_config_or_folder(straight, tmp_path):
    other = deepatlas("run", "decoding", "--resume", str(straight))
    assert other.returncode == 2 and "run of 'gpt-pretrain', not 'decoding'" in other.stderr
    changed = deepatlas("run", "gpt-pretrain", "--resume", str(straight), "train.steps=999")
    assert changed.returncode == 2 and "train.steps" in changed.stderr
    nowhere = deepatlas("run", "gpt-pretrain", "--resume", str(tmp_path / "missing"))
    assert nowhere.returncode == 2 and "no such run folder" in nowhere.stderr
    (tmp_path / "empty").mkdir()
    empty = deepatlas("run", "gpt-pretrain", "--resume", str(tmp_path / "empty"))
    assert empty.returncode == 2 and "not a deepatlas run folder" in empty.stderr
    for out in (other, changed, nowhere, empty):
        assert "Traceback" not in out.stderr


def test_read_resumable_gives_the_saved_config(straight):
    exp = find("gpt-pretrain")[0]
    cfg, quick = read_resumable(exp, straight)
    assert quick and cfg.train.steps == 120 and cfg.corpus_chars == 120000
    with pytest.raises(ResumeError, match="not 'decoding'"):
        read_resumable(find("decoding")[0], straight)
