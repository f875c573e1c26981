"""Data-parallel training on PyTorch's own engine: DDP and FSDP over torch.distributed (place S6).

Data parallelism (Dean et al. 2012; Goyal et al. 2017): N ranks hold the same model, each takes
its shard of the global batch, and the gradients are averaged before every update:

    g = ∇ (1/B) Σ_{i<B} ℓ_i  =  (1/N) Σ_r ∇ (1/b) Σ_{i ∈ shard r} ℓ_i  =  (1/N) Σ_r g_r,   B = N b

so N ranks with shards of b rows take exactly the step one process takes on the B rows. The
training loop is the shared one (deepatlas.core.train.train); this module only wraps the model,
hands each rank its shard of the same deterministic get_batch(step, micro), and reports the global
mean loss, so every rank logs the number a single process would.

Exactness, measured in tests/deploy/test_distributed.py: with 2 ranks the step is bitwise that of
one process accumulating the same two shards (grad_accum=2): the all-reduce adds two halves, and
a + b is exact in the same way on both sides (x/2 is exact in binary floating point). Against one
process on the whole batch at once the sums inside the matmuls run in another order, so losses and
weights agree to fp32 rounding (~1e-6 relative), not bit for bit.

ZeRO (Rajbhandari et al. 2020), bytes per rank for Ψ parameters trained in fp32 with Adam
(4Ψ weights + 4Ψ gradients + 8Ψ for the two moments), N ranks — zero_bytes_per_rank below:

    stage 0  DDP: everything replicated              16Ψ
    stage 1  optimizer states sharded                 4Ψ + 4Ψ + 8Ψ/N
    stage 2  + gradients sharded (reduce-scatter)     4Ψ + 12Ψ/N
    stage 3  + parameters sharded (all-gather per     16Ψ/N   (+ one layer's full weights
             layer in forward and backward) = FSDP           while it runs)

Here: "ddp" = torch.nn.parallel.DistributedDataParallel (stage 0); "fsdp" = FSDP2's
torch.distributed.fsdp.fully_shard on every transformer block and the root (stage 3; with
reshard_after_forward=False it keeps the gathered weights from forward to backward, i.e. stage 2's
traffic). Both run on CPU with the gloo backend in torch 2.13, and on GPUs with NCCL
(backend="nccl", one GPU per rank). Not covered here: the FSDP1 wrapper
(FullyShardedDataParallel, superseded by fully_shard) and checkpoints of FSDP runs (their
state is DTensors; full_state_dict gathers the weights for a comparison, not for resuming).

Run it:
    torchrun --nproc_per_node 2 -m deepatlas.deploy.distributed --steps 100 --strategy ddp
Several machines (same command on each, one rendezvous endpoint, node_rank 0..nnodes-1 implied):
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
             --rdzv_id job1 -m deepatlas.deploy.distributed --backend nccl --steps 1000
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from deepatlas.core.checkpoint import LATEST, latest_checkpoint
from deepatlas.core.train import TrainConfig, TrainResult, train

STRATEGIES = ("ddp", "fsdp")
BACKENDS = ("gloo", "nccl")


@dataclass(frozen=True)
class Rank:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a one-machine job)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init(rank: int | None = None, world: int | None = None, port: int | None = None,
         backend: str = "gloo", timeout_s: float = 60.0) -> Rank:
    """Join the process group: from the arguments (a spawned job on 127.0.0.1) or, when they are
    None, from torchrun's RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT. timeout_s bounds every
    collective, so a rank that dies makes the others fail instead of waiting forever."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; valid: {', '.join(BACKENDS)}")
    if rank is None:
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(f"not started by torchrun ({', '.join(missing)} unset): run "
                               "`torchrun --nproc_per_node N -m deepatlas.deploy.distributed ...`")
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    else:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group(backend, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    return Rank(rank, world)


def shard(batch: Any, rank: int, world: int) -> Any:
    """Rows [rank·b, (rank+1)·b) of every tensor in `batch` (tensor, tuple, list or dict), b = B/world."""
    if isinstance(batch, Tensor):
        if batch.shape[0] % world:
            raise ValueError(f"global batch of {batch.shape[0]} rows does not split into {world} "
                             f"equal shards; make the batch size a multiple of {world}")
        b = batch.shape[0] // world
        return batch[rank * b:(rank + 1) * b]
    if isinstance(batch, dict):
        return {k: shard(v, rank, world) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(v, rank, world) for v in batch)
    raise TypeError(f"cannot shard a batch of type {type(batch).__name__}; use tensors, tuples or dicts")


class _GlobalMean(torch.autograd.Function):
    """Forward: the mean of this loss over all ranks, (1/N) Σ_r L_r (one all-reduce).
    Backward: the gradient of the local loss alone; DDP/FSDP average the gradients themselves."""

    @staticmethod
    def forward(ctx, local: Tensor) -> Tensor:
        total = local.detach().clone()
        dist.all_reduce(total)
        return total / dist.get_world_size()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


def global_mean_loss(loss_fn: Callable[[nn.Module, Any], Tensor]) -> Callable[[nn.Module, Any], Tensor]:
    """loss_fn whose value is the global batch's mean loss on every rank (what one process logs)."""
    return lambda model, batch: _GlobalMean.apply(loss_fn(model, batch))


class ReplicatedDDP(DistributedDataParallel):
    """DDP whose state_dict has the plain model's keys (no "module." prefix), so a checkpoint
    written by an N-rank run loads into one process and the other way round."""

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


def wrap(model: nn.Module, strategy: str = "ddp") -> nn.Module:
    """DDP (replicate) or FSDP2 (shard every block of model.blocks, then the root)."""
    if strategy == "ddp":
        return ReplicatedDDP(model)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in getattr(model, "blocks", []):
            fully_shard(block)           # each block's weights gathered only while it runs
        fully_shard(model)               # the rest (embeddings, final norm, tied head)
        return model
    raise ValueError(f"strategy={strategy!r}; valid: {', '.join(STRATEGIES)}")


def full_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The whole weights on every rank (an FSDP shard is gathered with DTensor.full_tensor)."""
    out = {}
    for k, v in model.state_dict().items():
        v = v.full_tensor() if hasattr(v, "full_tensor") else v
        out[k.removeprefix("module.")] = v.detach().cpu().clone()
    return out


def local_numel(model: nn.Module) -> int:
    """Parameter entries this rank stores (its shard under FSDP, everything under DDP)."""
    return sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in model.parameters())


def zero_bytes_per_rank(n_params: int, world: int, stage: int, weight_bytes: int = 4,
                        grad_bytes: int = 4, optim_bytes: int = 8) -> float:
    """Model-state bytes one rank holds under ZeRO stage 0–3 (fp32 Adam by default; see above)."""
    if stage not in (0, 1, 2, 3) or world < 1:
        raise ValueError(f"stage={stage} (valid 0, 1, 2, 3), world={world} (valid ≥ 1)")
    w, g, o = n_params * weight_bytes, n_params * grad_bytes, n_params * optim_bytes
    return {0: w + g + o, 1: w + g + o / world, 2: w + (g + o) / world, 3: (w + g + o) / world}[stage]


def _rank_checkpoint_dir(checkpoint_dir: Path, rank: Rank, resume: bool) -> Path:
    """Rank 0 writes the run's checkpoints; other ranks save into a scratch folder (train() loads
    and saves through one folder) that starts as a copy of rank 0's newest checkpoint."""
    scratch = Path(tempfile.mkdtemp(prefix=f"deepatlas-rank{rank.rank}-"))
    newest = latest_checkpoint(checkpoint_dir) if resume else None
    if newest is not None:
        shutil.copytree(newest, scratch / newest.name)
        (scratch / LATEST).write_text(newest.name + "\n")
    return scratch


def train_data_parallel(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor],
                        get_batch: Callable[[int, int], Any], cfg: TrainConfig, rank: Rank,
                        strategy: str = "ddp", run=None, evaluate: Callable | None = None,
                        checkpoint_dir: Path | None = None, resume: bool = False
                        ) -> tuple[TrainResult, nn.Module]:
    """core.train.train on `rank`'s shard of each global batch get_batch(step, micro).

    Inside an initialised process group (init). Rank 0 alone logs to `run` and writes the
    checkpoints; all ranks log the same global-mean losses. Returns (result, wrapped model)."""
    if strategy == "fsdp" and checkpoint_dir is not None:
        raise ValueError("checkpoints of FSDP runs are not supported here (sharded DTensor state); "
                         "use strategy='ddp' or checkpoint_dir=None")
    wrapped = wrap(model, strategy)
    local_batch = lambda step, micro: shard(get_batch(step, micro), rank.rank, rank.world)  # noqa: E731
    scratch = None
    if checkpoint_dir is not None and not rank.is_main:
        checkpoint_dir = scratch = _rank_checkpoint_dir(Path(checkpoint_dir), rank, resume)
    try:
        result = train(wrapped, global_mean_loss(loss_fn), local_batch,
                       replace(cfg, progress=cfg.progress and rank.is_main),
                       run=run if rank.is_main else None, evaluate=evaluate,
                       checkpoint_dir=checkpoint_dir, resume=resume)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return result, wrapped


# ---- launching N processes on this machine -------------------------------------------------

def _rank_main(rank: int, fn: Callable, world: int, port: int, out: str, args: tuple,
               timeout_s: float, threads: int) -> None:
    torch.set_num_threads(threads)
    r = init(rank, world, port, timeout_s=timeout_s)
    try:
        result = fn(r, *args)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], world: int, *args: Any, timeout_s: float = 300.0,
              threads: int = 1) -> list[Any]:
    """Start `world` processes on 127.0.0.1 (gloo), run fn(Rank, *args) in each, return their
    results in rank order. fn must be importable (module level) and its result torch.save-able.

    A rank that raises or dies fails the whole job with a RuntimeError naming it (the others are
    terminated); a job still running after timeout_s is terminated with a TimeoutError."""
    import torch.multiprocessing as mp

    if world < 1:
        raise ValueError(f"world={world}; valid: ≥ 1 processes")
    with tempfile.TemporaryDirectory(prefix="deepatlas-ranks-") as out:
        ctx = mp.start_processes(_rank_main, args=(fn, world, free_port(), out, args, timeout_s / 2, threads),
                                 nprocs=world, join=False, start_method="spawn")
        deadline = time.monotonic() + timeout_s
        try:
            while not ctx.join(timeout=0.5):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{world}-process job still running after {timeout_s:.0f} s; terminated")
        except mp.ProcessRaisedException as e:
            last = [line for line in str(e).strip().splitlines() if line.strip()][-1]
            raise RuntimeError(f"rank {e.error_index} of {world} failed, job stopped: {last}") from e
        except mp.ProcessExitedException as e:
            raise RuntimeError(f"rank {e.error_index} of {world} died (exit code {e.exit_code}), job stopped") from e
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
        return [torch.load(Path(out) / f"rank{r}.pt", weights_only=True) for r in range(world)]


# ---- the GPT job the experiment, the tests and torchrun share ------------------------------

@dataclass
class GPTJob:
    corpus_chars: int = 200_000
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    block_size: int = 32
    batch_size: int = 16            # the GLOBAL batch (split over ranks)
    steps: int = 50
    lr: float = 3e-3
    clip: float = 1.0
    schedule: str = "cosine"
    strategy: str = "ddp"
    seed: int = 0
    crash_rank: int = -1            # fault injection: this rank's process exits (code 7) at step 2


def _gpt_setup(job: GPTJob):
    from deepatlas.data.austen import austen_corpus
    from deepatlas.data.lm import char_lm_dataset
    from deepatlas.models.gpt import GPT, GPTConfig, lm_loss

    tokenizer, data = char_lm_dataset(austen_corpus()[:job.corpus_chars])
    torch.manual_seed(job.seed)
    model = GPT(GPTConfig(vocab_size=len(tokenizer), block_size=job.block_size, n_layer=job.n_layer,
                          n_head=job.n_head, n_embd=job.n_embd, dropout=0.0))  # dropout 0: RNG-free
    cfg = TrainConfig(steps=job.steps, lr=job.lr, warmup=0, schedule=job.schedule, clip=job.clip,
                      log_every=0, progress=False, seed=job.seed)

    def get_batch(step: int, micro: int):
        if step == 2 and dist.is_initialized() and dist.get_rank() == job.crash_rank:
            os._exit(7)                                  # as if the process were killed
        return data.get_batch("train", step, micro, job.batch_size, job.block_size, job.seed)

    return model, lm_loss, get_batch, cfg


def train_gpt(rank: Rank | None, job: GPTJob, accumulate_shards: int = 1,
              checkpoint_dir: str | None = None, resume: bool = False) -> dict:
    """Train the job's char GPT on Jane Austen. rank=None: one process, no process group;
    accumulate_shards=N there splits each global batch into N micro-batches (grad_accum=N), the
    exact single-process twin of N ranks. Returns losses, weights, seconds, samples/s."""
    model, loss_fn, get_batch, cfg = _gpt_setup(job)
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if rank is None:
        n = accumulate_shards
        micro = (lambda step, m: shard(get_batch(step, 0), m, n)) if n > 1 else get_batch  # noqa: E731
        result = train(model, loss_fn, micro, replace(cfg, grad_accum=n), checkpoint_dir=ckpt, resume=resume)
        weights = full_state_dict(model)
    else:
        result, wrapped = train_data_parallel(model, loss_fn, get_batch, cfg, rank, job.strategy,
                                              checkpoint_dir=ckpt, resume=resume)
        weights = full_state_dict(wrapped)
        weights = weights if rank.is_main else {}      # one copy comes back
    return {"losses": result.losses, "weights": weights, "seconds": result.seconds,
            "samples_per_s": result.samples_per_s * (rank.world if rank else 1),
            "local_numel": local_numel(model) if rank else sum(p.numel() for p in model.parameters())}


def train_gpt_many(rank: Rank | None, runs: list[dict]) -> list[dict]:
    """train_gpt(rank, **kwargs) for each kwargs in `runs`, one after the other in one job
    (one process start for several comparisons)."""
    return [train_gpt(rank, **kwargs) for kwargs in runs]


def main(argv: list[str] | None = None) -> int:
    """torchrun entry: train GPTJob on this job's ranks; rank 0 prints (and --out writes) losses."""
    p = argparse.ArgumentParser(prog="torchrun ... -m deepatlas.deploy.distributed",
                                description="data-parallel training of a char GPT on Jane Austen")
    for f, default in asdict(GPTJob()).items():
        p.add_argument("--" + f.replace("_", "-"), type=type(default), default=default)
    p.add_argument("--backend", default="gloo", choices=BACKENDS)
    p.add_argument("--timeout-s", type=float, default=60.0)
    p.add_argument("--out", type=Path, help="rank 0 writes losses (and the weights beside it)")
    a = vars(p.parse_args(argv))
    backend, timeout_s, out = a.pop("backend"), a.pop("timeout_s"), a.pop("out")
    job = GPTJob(**a)
    if job.strategy not in STRATEGIES:
        p.error(f"--strategy {job.strategy!r}; valid: {', '.join(STRATEGIES)}")
    rank = init(backend=backend, timeout_s=timeout_s)
    try:
        result = train_gpt(rank, job)
    finally:
        dist.destroy_process_group()
    if rank.is_main:
        print(json.dumps({"world": rank.world, "losses": result["losses"],
                          "samples_per_s": result["samples_per_s"]}))
        if out is not None:
            out.write_text(json.dumps({"world": rank.world, "job": asdict(job), **{
                k: result[k] for k in ("losses", "seconds", "samples_per_s")}}))
            torch.save(result["weights"], out.with_suffix(".pt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
