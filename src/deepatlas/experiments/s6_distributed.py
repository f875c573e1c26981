"""S6: data-parallel training of a GPT on torch.distributed — 2 gloo processes equal 1 process.

A char-level GPT trains on Jane Austen five ways, every one on the same global batches
get_batch(step) of the shared loop (deepatlas.core.train):

    whole        1 process, the global batch of B rows in one forward/backward
    accumulated  1 process, the same batch as 2 micro-batches of B/2 rows (grad_accum=2)
    ddp          2 processes on 127.0.0.1 (gloo), DistributedDataParallel, B/2 rows each
    fsdp         2 processes, FSDP2 fully_shard per block + root (ZeRO-3: each rank stores half),
                 without gradient clipping, against `accumulated` without clipping

Claim: ddp equals accumulated and fsdp equals accumulated-without-clipping bit for bit (losses at
every step and the final weights; deploy/distributed.py says why). With clipping FSDP is not
bitwise: its gradient norm is a sum of squares taken shard by shard, so the clip factor differs in
the last bits. Against `whole` (the matmuls sum in another order) the first step's loss agrees to
fp32 rounding (|Δloss| ≤ 1e-5: same weights, same rows), and then — as for any two fp32 runs that
round differently — the trajectories separate, along the same learning curve: the mean loss of
the last `tail` steps agrees within `tail_tol` nats.

Measured and first claimed otherwise: an earlier version of this experiment claimed |Δloss| ≤ 1e-4
at every step and |Δw| ≤ 1e-4 for ddp vs whole over the full 200 steps. It did NOT hold (full
setting, 2026-12-02): max |Δloss| 0.013 nats, max |Δw| 0.061; |Δloss| was 4.8e-7 at step 0,
4.5e-6 at step 10 and ~1e-3 from step 20 on — rounding differences amplified by training, not a
bug (ddp was bitwise equal to accumulated in the same run). The second version claimed |Δloss|
≤ 1e-5 over the first 10 steps; it did NOT hold either (150 steps: 8.4e-5 within the first 10,
first > 1e-4 at step 15; the last-20-step mean loss agreed within 1.5e-5). How soon rounding
differences grow depends on the run, so the claim keeps only what is exact (bitwise) or robust
(the first step, the curve).

Throughput is reported, not claimed: on a 2-core machine two 1-thread processes compete with
everything else running, and the load average is recorded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.deploy.distributed import GPTJob, run_ranks, train_gpt, train_gpt_many


@dataclass
class Config:
    job: GPTJob = field(default_factory=lambda: GPTJob(
        corpus_chars=400_000, n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=32,
        steps=150, lr=2e-3, clip=1.0))
    rounding_steps: int = 1       # ddp vs whole: |Δloss| ≤ rounding_tol over these first steps
    rounding_tol: float = 1e-5
    tail: int = 20                # ddp vs whole: mean loss of the last `tail` steps within tail_tol
    tail_tol: float = 0.01
    timeout_s: float = 540.0      # the 2-process job is terminated after this


def _diffs(got: dict, want: dict) -> tuple[float, float]:
    dl = max(abs(a - b) for a, b in zip(got["losses"], want["losses"]))
    dw = max((got["weights"][k] - want["weights"][k]).abs().max().item() for k in want["weights"])
    return dl, dw


@experiment("S6", "distributed-training",
            claim="a GPT trained by 2 gloo processes takes bit for bit the steps of one process "
                  "accumulating the same two half-batches (DDP; FSDP fully_shard without clipping); "
                  "against one process on the whole batch its first loss agrees to fp32 rounding "
                  "(≤ 1e-5 nats) and, as rounding differences grow, it follows the same curve "
                  "(last-20-step mean loss within 0.01 nats)",
            config=Config, one_thread=True,
            quick={"job.corpus_chars": 100_000, "job.n_layer": 2, "job.n_embd": 64, "job.block_size": 32,
                   "job.batch_size": 16, "job.steps": 25, "job.lr": 3e-3},
            headline={"ddp_vs_accumulated_max_weight_diff": ("DDP vs 1 process, accumulated: max |Δw|", "{:.1g}"),
                      "fsdp_vs_accumulated_max_weight_diff": ("FSDP vs 1 process: max |Δw|", "{:.1g}"),
                      "ddp_vs_whole_early_max_loss_diff": ("DDP vs whole batch, first step", "{:.1e} nats"),
                      "speedup_ddp": ("2-process throughput", "{:.2f}×")})
def distributed_training(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    job = cfg.job
    load_before = os.getloadavg()[0]
    whole = train_gpt(None, job)
    accumulated = train_gpt(None, job, accumulate_shards=2)
    accumulated_noclip = train_gpt(None, replace(job, clip=0.0), accumulate_shards=2)
    ddp, fsdp = run_ranks(train_gpt_many, 2, [{"job": replace(job, strategy="ddp")},
                                              {"job": replace(job, strategy="fsdp", clip=0.0)}],
                          timeout_s=cfg.timeout_s)[0]
    for step, (a, b, c) in enumerate(zip(whole["losses"], ddp["losses"], fsdp["losses"])):
        run.log(step=step, loss_whole=a, loss_ddp=b, loss_fsdp=c)

    m: dict = {"steps": job.steps, "global_batch": job.batch_size,
               "params": whole["local_numel"], "load_average": round(max(load_before, os.getloadavg()[0]), 1)}
    for name, got, ref_name, ref in (("ddp", ddp, "accumulated", accumulated), ("ddp", ddp, "whole", whole),
                                     ("fsdp", fsdp, "accumulated", accumulated_noclip)):
        dl, dw = _diffs(got, ref)
        m[f"{name}_vs_{ref_name}_max_loss_diff"], m[f"{name}_vs_{ref_name}_max_weight_diff"] = dl, dw
    for name, got, ref in (("ddp", ddp, accumulated), ("fsdp", fsdp, accumulated_noclip)):
        m[f"{name}_bitwise_equal_accumulated"] = got["losses"] == ref["losses"] and \
            m[f"{name}_vs_accumulated_max_weight_diff"] == 0.0
    gaps = [abs(a - b) for a, b in zip(ddp["losses"], whole["losses"])]
    m["ddp_vs_whole_early_max_loss_diff"] = max(gaps[:cfg.rounding_steps])
    m["ddp_vs_whole_first_step_over_1e-4"] = next((i for i, g in enumerate(gaps) if g > 1e-4), None)
    tail = min(cfg.tail, job.steps)
    m["ddp_vs_whole_tail_mean_loss_diff"] = abs(sum(ddp["losses"][-tail:]) - sum(whole["losses"][-tail:])) / tail
    m["fsdp_params_per_rank_fraction"] = fsdp["local_numel"] / whole["local_numel"]
    m["loss_first"], m["loss_last"] = whole["losses"][0], whole["losses"][-1]
    m["samples_per_s_1proc"] = whole["samples_per_s"]
    m["samples_per_s_ddp"], m["samples_per_s_fsdp"] = ddp["samples_per_s"], fsdp["samples_per_s"]
    m["speedup_ddp"] = ddp["samples_per_s"] / whole["samples_per_s"]
    m["speedup_fsdp"] = fsdp["samples_per_s"] / whole["samples_per_s"]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    steps = range(job.steps)
    ax1.plot(steps, whole["losses"], lw=2.5, alpha=0.4, label="1 process, whole batch")
    ax1.plot(steps, ddp["losses"], lw=1, label="2 processes, DDP")
    ax1.plot(steps, fsdp["losses"], lw=1, ls="--", label="2 processes, FSDP (no clipping)")
    ax1.set(xlabel="step", ylabel="train loss (nats/char)", title="the same curve")
    ax1.legend()
    floor = 1e-10
    for name, got, ref, style in (("DDP − whole", ddp, whole, "-"),
                                  ("DDP − accumulated", ddp, accumulated, ":"),
                                  ("FSDP − accumulated, no clipping", fsdp, accumulated_noclip, "--")):
        ax2.semilogy(steps, [max(abs(a - b), floor) for a, b in zip(got["losses"], ref["losses"])],
                     ls=style, label=name)
    ax2.axhline(cfg.rounding_tol, color="gray", ls="--", lw=0.8, label=f"{cfg.rounding_tol:g}")
    ax2.axvline(cfg.rounding_steps, color="gray", ls=":", lw=0.8)
    ax2.set(xlabel="step", ylabel="|Δ loss| (1e-10 = exactly 0)", title="differences")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    run.savefig(fig, "losses")
    plt.close(fig)

    held = (m["ddp_bitwise_equal_accumulated"] and m["fsdp_bitwise_equal_accumulated"]
            and m["ddp_vs_whole_early_max_loss_diff"] <= cfg.rounding_tol
            and m["ddp_vs_whole_tail_mean_loss_diff"] <= cfg.tail_tol
            and m["fsdp_params_per_rank_fraction"] <= 0.51 and m["loss_last"] < m["loss_first"] - 0.5)
    notes = (f"bit for bit: DDP = accumulated {m['ddp_bitwise_equal_accumulated']}, FSDP (no clipping) = "
             f"accumulated {m['fsdp_bitwise_equal_accumulated']}; DDP vs whole batch: |Δloss| ≤ "
             f"{m['ddp_vs_whole_early_max_loss_diff']:.1e} over the first {cfg.rounding_steps} step(s), first "
             f"> 1e-4 at step {m['ddp_vs_whole_first_step_over_1e-4']}, max {m['ddp_vs_whole_max_loss_diff']:.1e}, "
             f"last-{tail}-step mean loss within {m['ddp_vs_whole_tail_mean_loss_diff']:.1e}, final |Δw| "
             f"{m['ddp_vs_whole_max_weight_diff']:.1e}; FSDP stores {m['fsdp_params_per_rank_fraction']:.0%} "
             f"of the weights per rank; 2-process throughput {m['speedup_ddp']:.2f}× (DDP), "
             f"{m['speedup_fsdp']:.2f}× (FSDP) of one 1-thread process at load average {m['load_average']} "
             "on this 2-core machine")
    return Verdict(held=held, metrics=m, notes=notes)
