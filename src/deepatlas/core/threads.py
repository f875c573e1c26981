"""Run tiny-model experiments on one thread (`@experiment(..., one_thread=True)`).

The foundations experiments multiply matrices of a few thousand entries; spreading such work over
threads costs more in synchronisation than it saves, and on a shared machine it collapses (measured
here: a 1000×32 MLP step took 5.8 ms on one torch thread and 213 ms on two under load).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from threadpoolctl import threadpool_limits


@contextmanager
def one_thread() -> Iterator[None]:
    """Limit torch's intra-op threads and numpy's BLAS to 1 inside the block; restore after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)
