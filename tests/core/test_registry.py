"""The registry runs an experiment declared one_thread=True on one torch thread, then restores; a run's
summary names the device its work went to (the CPU when the experiment never read run.device)."""
from dataclasses import dataclass

import torch

from deepatlas.core.registry import EXPERIMENTS, Verdict, experiment, run_experiment


@dataclass
class _Config:
    n: int = 1


def test_one_thread_experiment_runs_on_one_thread_and_restores(tmp_path):
    seen = {}
    for single in (True, False):
        name = f"_threads_probe_{single}"

        @experiment("M4", name, claim="probe: records the torch thread count it runs with",
                    config=_Config, one_thread=single)
        def probe(cfg: _Config, run) -> Verdict:
            seen[single] = torch.get_num_threads()
            return Verdict(held=True, metrics={})

        try:
            torch.set_num_threads(2)
            summary = run_experiment(EXPERIMENTS[name], out=tmp_path / name, echo=False)
            assert summary["held"] and "error" not in summary, summary.get("traceback")
            assert torch.get_num_threads() == 2          # restored afterwards
        finally:
            EXPERIMENTS.pop(name, None)
    assert seen == {True: 1, False: 2}


def test_summary_says_when_an_experiment_ignored_the_device(tmp_path):
    for reads in (True, False):
        name = f"_device_probe_{reads}"

        @experiment("M4", name, claim="probe: reads run.device or not", config=_Config)
        def probe(cfg: _Config, run) -> Verdict:
            return Verdict(held=True, metrics={"device": run.device if reads else "-"})

        try:
            # run_experiment takes the device as given (the CLI's pick() checks it exists), so "cuda" is
            # only a name here and nothing touches a GPU
            summary = run_experiment(EXPERIMENTS[name], out=tmp_path / name, device="cuda", echo=False)
        finally:
            EXPERIMENTS.pop(name, None)
        assert summary["held"], summary.get("traceback")
        if reads:
            assert summary["device"] == "cuda" and "device_ignored" not in summary
        else:
            assert summary["device"] == "cpu" and "does not read --device" in summary["device_ignored"]
