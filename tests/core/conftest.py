"""Helpers of the training-loop tests (CPU and GPU alike)."""
from __future__ import annotations

import pytest

from deepatlas.core.train import train


class Crash(Exception):
    """Raised by get_batch to kill a training run right after a checkpoint."""


@pytest.fixture
def crash_and_resume(tmp_path):
    """crash_and_resume(make_model, loss_fn, get_batch, cfg, crash_step, before_resume=None) trains straight
    through, then again with a crash at crash_step (after its checkpoint) and a resume into a model with other
    initial weights (make_model(seed=99)). Returns (straight result, straight model, resumed result, resumed
    model): everything must come from the checkpoint for the two to agree."""

    def _run(make_model, loss_fn, get_batch, cfg, crash_step: int, before_resume=None):
        straight_model = make_model()
        straight = train(straight_model, loss_fn, get_batch, cfg)

        def crashing_batch(step, micro):
            if step == crash_step:
                raise Crash
            return get_batch(step, micro)

        with pytest.raises(Crash):
            train(make_model(), loss_fn, crashing_batch, cfg, checkpoint_dir=tmp_path)
        if before_resume is not None:
            before_resume(tmp_path)
        fresh = make_model(seed=99)
        resumed = train(fresh, loss_fn, get_batch, cfg, checkpoint_dir=tmp_path, resume=True)
        return straight, straight_model, resumed, fresh

    return _run
