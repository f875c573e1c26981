"""Continuous batching: requests join and leave a running decode batch at token granularity.

Static batching (decode.generate with B prompts) runs the batch until its longest row is done:
a row that finished early rides along, and a request that arrives meanwhile waits for the
whole batch. Continuous batching (Yu et al. 2022, "Orca": iteration-level scheduling; vLLM,
Kwon et al. 2023) schedules every step instead:

    each step:  admit waiting requests into free slots (prefill their prompt: first token)
                one decode step for all active rows at once  -> logits (B, V)
                choose each row's next token with its own settings; a row that stopped leaves
                (its slot is freed at once and the batch compacts: see fast_decode.SlotCache)

One step reads every weight once whatever B is, so B rows cost little more than one on a
memory-bound CPU: throughput grows with B while each row's per-token latency grows slowly.
The scheduler runs in one thread (`serve_forever`); other threads `submit` and `cancel`.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

from deepatlas.generation.fast_decode import FastLlama
from deepatlas.generation.processors import check_sampling_settings, process_logits


@dataclass
class Request:
    """One sequence to decode. on_token(id) gets each new token; on_done(reason) once at the end,
    reason ∈ {"stop", "length", "cancelled", "error: ..."}."""

    prompt: Sequence[int]
    max_tokens: int
    temperature: float = 0.0                 # 0 = greedy
    top_p: float | None = None
    seed: int | None = None
    stop_ids: Sequence[int] = ()
    on_token: Callable[[int], None] = lambda token: None
    on_done: Callable[[str], None] = lambda reason: None
    # set by the scheduler / caller
    cancelled: bool = False
    tokens: list[int] = field(default_factory=list)
    arrived: float = field(default_factory=time.perf_counter)
    generator: torch.Generator | None = None

    def check(self, context: int) -> None:
        if len(self.prompt) == 0:
            raise ValueError("the prompt is empty: give at least one token")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens={self.max_tokens!r} must be an integer ≥ 1")
        if len(self.prompt) + self.max_tokens > context:
            raise ValueError(f"prompt of {len(self.prompt)} tokens + max_tokens={self.max_tokens} exceeds the "
                             f"context of {context} tokens: ask for at most {context - len(self.prompt)}")
        check_sampling_settings(self.temperature if self.temperature > 0 else 1.0, None, self.top_p, 1.0)


def choose(logits: Tensor, req: Request) -> int:
    """logits (V,) -> the next id: argmax at temperature 0, else x ~ softmax(top_p(z / T))."""
    if req.temperature <= 0:
        return int(logits.argmax())
    z = process_logits(logits[None].float(), req.temperature, None, req.top_p)   # (1, V)
    return int(torch.multinomial(z.softmax(-1), 1, generator=req.generator))


class ContinuousBatcher:
    """The scheduler over a FastLlama's slots. `max_batch` ≤ the cache's slots."""

    def __init__(self, fast: FastLlama, max_batch: int | None = None):
        self.fast = fast
        self.max_batch = min(max_batch or fast.cache.n_slots, fast.cache.n_slots)
        self.waiting: deque[Request] = deque()
        self.active: list[Request] = []           # row r of the batch = slot r
        self.lock = threading.Condition()
        self.closed = False
        self.steps = 0
        self.batch_sizes: list[int] = []
        self.finished: dict[str, int] = {}       # how requests ended: reason -> count

    @property
    def context(self) -> int:
        return self.fast.cache.max_len

    def submit(self, req: Request) -> Request:
        req.check(self.context)
        if req.temperature > 0:
            req.generator = torch.Generator().manual_seed(req.seed if req.seed is not None
                                                          else int(torch.randint(0, 2**31, ()).item()))
        with self.lock:
            if self.closed:
                raise RuntimeError("the batcher is shut down")
            self.waiting.append(req)
            self.lock.notify()
        return req

    def cancel(self, req: Request) -> None:
        """Stop `req` at the next step; its slot is freed there."""
        req.cancelled = True
        with self.lock:
            self.lock.notify()

    def busy(self) -> bool:
        return bool(self.waiting or self.active)

    # ---- the scheduling loop -------------------------------------------------------------
    def _finish(self, row: int, reason: str) -> None:
        """Row leaves: the last row moves into its slot so rows stay 0..B-1."""
        req = self.active[row]
        last = len(self.active) - 1
        self.fast.cache.move(last, row)
        self.active[row] = self.active[last]
        self.active.pop()
        self._done(req, reason)

    def _done(self, req: Request, reason: str) -> None:
        self.finished[reason] = self.finished.get(reason, 0) + 1
        req.on_done(reason)

    def _deliver(self, row: int, token: int) -> bool:
        """Give row its token; True if it is done (stop id or max_tokens)."""
        req = self.active[row]
        req.tokens.append(token)
        req.on_token(token)
        if token in req.stop_ids:
            self._finish(row, "stop")
            return True
        if len(req.tokens) >= req.max_tokens:
            self._finish(row, "length")
            return True
        return False

    def step(self) -> bool:
        """Admit, decode one token for every active row, retire. False when there was nothing to do."""
        with self.lock:
            for i in reversed(range(len(self.active))):        # cancelled rows leave first
                if self.active[i].cancelled:
                    self._finish(i, "cancelled")
            admit = []
            while self.waiting and len(self.active) + len(admit) < self.max_batch:
                req = self.waiting.popleft()
                if req.cancelled:
                    self._done(req, "cancelled")
                else:
                    admit.append(req)
        if not admit and not self.active:
            return False
        # rows that were already running take one decode step together
        if self.active:
            tokens = [r.tokens[-1] for r in self.active]
            logits = self.fast.step(tokens)                   # (B, V)
            self.steps += 1
            self.batch_sizes.append(len(tokens))
            nxt = [choose(logits[i], r) for i, r in enumerate(self.active)]
            for row in reversed(range(len(nxt))):             # reversed: finishing moves the last row
                self._deliver(row, nxt[row])
        # new requests: prefill into the next free slot -> their first token
        for req in admit:
            row = len(self.active)
            self.active.append(req)
            try:
                logits = self.fast.prefill(row, req.prompt)
            except Exception as err:  # a bad request must not stop the others
                self.active.pop()
                self._done(req, f"error: {err}")
                continue
            self._deliver(row, choose(logits, req))
        return True

    def serve_forever(self, idle_wait: float = 0.05) -> None:
        """Run steps until close(); sleeps on the condition while there is no work."""
        while True:
            with self.lock:
                while not self.closed and not self.busy():
                    self.lock.wait(idle_wait)
                if self.closed and not self.busy():
                    return
            try:
                self.step()
            except Exception as err:  # fail every running request rather than hang them
                with self.lock:
                    for req in self.active + list(self.waiting):
                        req.on_done(f"error: {err}")
                    self.active, self.waiting = [], deque()

    def close(self) -> None:
        """Let running and waiting requests finish, then serve_forever returns."""
        with self.lock:
            self.closed = True
            self.lock.notify_all()


def generate_batched(batcher: ContinuousBatcher, prompts: Sequence[Sequence[int]], max_tokens: int,
                     **settings) -> list[list[int]]:
    """Run `prompts` through the batcher in this thread (all admitted up front) -> new tokens each."""
    reqs = [batcher.submit(Request(list(p), max_tokens, **settings)) for p in prompts]
    while batcher.step():
        pass
    return [r.tokens for r in reqs]


def decode_throughput(batcher: ContinuousBatcher, prompts: Sequence[Sequence[int]], max_tokens: int) -> float:
    """Decode tokens/s over all rows once every prompt is in: the first step (the prompts' prefills
    and first tokens) is not timed, the following max_tokens - 1 steps are."""
    if max_tokens < 2:
        raise ValueError(f"max_tokens={max_tokens} must be ≥ 2 to time a decode step")
    reqs = [batcher.submit(Request(list(p), max_tokens)) for p in prompts]
    batcher.step()
    t = time.perf_counter()
    while batcher.step():
        pass
    return sum(len(r.tokens) - 1 for r in reqs) / (time.perf_counter() - t)
