"""T2: QLoRA — LoRA on a frozen NF4 SmolLM2 against LoRA on the fp32 model, side by side.

Built: tuning/qlora.py (NF4 base + LoRA: Dettmers et al. 2023 eq. 5), quant/nf4.py, tuning/lora.py.

Task: adapt SmolLM2-135M-Instruct to Jane Austen's prose — next-token loss on windows from the
first 80 % of Persuasion; quality = perplexity on windows from its last 20 % (unseen), before and
after. Both variants: LoRA r on every attention and MLP linear, the same steps, batches and
learning rate; the QLoRA base holds the block linears in NF4 (the tied embedding / head stays
fp32, as in the paper), dequantised to fp32 at each call.
Memory: the bytes of the model's weights (parameters + buffers, measured from the tensors), and
the training memory = weights + 12 bytes per trainable parameter (its gradient and Adam's two
moments besides it) + the bytes autograd saves for backward in a step (measured with
saved_tensors_hooks). NF4Linear dequantises again in backward instead of saving ŵ (as
bitsandbytes), so QLoRA's saved bytes hold no full-precision weights. (In-process RSS is not used:
the allocator keeps the freed fp32 pages of the LoRA run.)
Held when both improve the held-out perplexity, QLoRA's relative gain is ≥ `min_gain_fraction` of
LoRA's (its absolute perplexity also carries NF4's own error, measured by T2 quantise), its base
weights take ≤ 1/`min_weight_ratio` of LoRA's, and it trains in less memory.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.experiments.t2_quant import load_smollm2, persuasion_ids
from deepatlas.quant.qmodel import quantize_linears, weight_bytes
from deepatlas.tuning.lora import apply_lora, remove_lora, trainable_parameters
from deepatlas.tuning.qlora import QLORA_TARGETS, SavedBytes, lm_loss, perplexity, text_windows


@dataclass
class Config:
    r: int = 8
    alpha: float = 16.0
    steps: int = 12
    batch: int = 4
    length: int = 64
    lr: float = 1e-3
    n_test: int = 4
    test_length: int = 128
    min_gain_fraction: float = 0.7  # QLoRA's relative perplexity gain ≥ 70 % of LoRA's
    min_weight_ratio: float = 2.0  # the NF4 base holds its weights in ≤ half of fp32's bytes
    seed: int = 0


def _finetune(model: torch.nn.Module, train_ids: list[int], cfg: Config) -> tuple[float, list[float], int]:
    """-> (seconds, losses, bytes autograd saved in the first step's forward)."""
    weights = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    saved = SavedBytes(weights)

    def get_batch(step: int, micro: int) -> torch.Tensor:
        return text_windows(train_ids, cfg.batch, cfg.length + 1, seed=cfg.seed * 100_003 + step)

    def loss_fn(m: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
        if saved.seen:
            return lm_loss(m, ids)
        with saved.hooks():
            return lm_loss(m, ids)

    t = time.perf_counter()
    res = train(model, loss_fn, get_batch, TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup=0, schedule="constant",
                                                       log_every=0, seed=cfg.seed, progress=False))
    return time.perf_counter() - t, res.losses, saved.total


@experiment("T2", "qlora",
            claim="LoRA on an NF4 SmolLM2 (QLoRA) learns Austen's prose nearly as well as LoRA on the fp32 model "
                  "(≥ 70 % of its perplexity gain), its base weights in a third of the memory and training in less",
            config=Config, one_thread=True,
            quick={"steps": 3, "batch": 2, "length": 32, "n_test": 1, "test_length": 64, "lr": 2e-3,
                   },
            headline={"ppl_base": ("perplexity before", "{:.2f}"), "ppl_lora": ("LoRA fp32 perplexity", "{:.2f}"),
                      "ppl_qlora": ("QLoRA perplexity", "{:.2f}"),
                      "weight_ratio": ("fp32 / NF4 weight bytes", "{:.1f}×"),
                      "train_mib_lora": ("LoRA training memory", "{:.0f} MiB"),
                      "train_mib_qlora": ("QLoRA training memory", "{:.0f} MiB")})
def qlora_vs_lora(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, tok = load_smollm2()
    train_ids = persuasion_ids(tok, "train", max(20_000, cfg.steps * cfg.batch * cfg.length * 5))
    test = text_windows(persuasion_ids(tok, "test", cfg.n_test * cfg.test_length * 6), cfg.n_test, cfg.test_length)
    ppl_base = perplexity(model, test)
    run.print(f"  base perplexity {ppl_base:.2f} on {test.numel()} held-out tokens; {len(train_ids):,} training tokens")
    rows: dict[str, dict] = {}
    for name in ("lora", "qlora"):
        if name == "qlora":   # back to the plain fp32 model, then its block linears to NF4 (fp32 freed)
            remove_lora(model)
            quantize_linears(model, "nf4", skip=("lm_head",))
        torch.manual_seed(cfg.seed)
        apply_lora(model, r=cfg.r, alpha=cfg.alpha, targets=QLORA_TARGETS)
        ppl_start = perplexity(model, test)               # the NF4 base costs perplexity before any step
        seconds, losses, saved = _finetune(model, train_ids, cfg)
        ppl = perplexity(model, test)
        rows[name] = {"perplexity": ppl, "perplexity_start": ppl_start, "seconds": seconds, "trainable": trainable_parameters(model),
                      "weight_bytes": weight_bytes(model), "saved_bytes": saved, "losses": losses}
        # training memory: weights + (parameter, gradient, Adam's m and v) of the adapters + what autograd saves
        rows[name]["train_bytes"] = rows[name]["weight_bytes"] + 12 * rows[name]["trainable"] + saved
        rows[name]["gain"] = 1 - ppl / ppl_start
        for s, l in enumerate(losses):
            run.log(variant=name, step=s, loss=l)
        run.print(f"  {name:>6}: perplexity {ppl_start:.2f} -> {ppl:.2f}; {rows[name]['trainable']:,} trainable; weights "
                  f"{rows[name]['weight_bytes'] / 2**20:.0f} MiB, training memory {rows[name]['train_bytes'] / 2**20:.0f} "
                  f"MiB (autograd saved {saved / 2**20:.0f}); {seconds:.0f} s")

    lo, q = rows["lora"], rows["qlora"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in rows.items():
        ax[0].plot(r["losses"], label=f"{name} ({r['seconds']:.0f} s)")
    ax[0].set(xlabel="step", ylabel="training loss (nats/token)", title="fine-tuning on Persuasion")
    ax[0].legend()
    names = ["base", "lora", "qlora"]
    ax[1].bar(names, [ppl_base, lo["perplexity"], q["perplexity"]], color=["C7", "C0", "C1"])
    for i, (n, mib) in enumerate(zip(names[1:], [lo["weight_bytes"], q["weight_bytes"]]), start=1):
        ax[1].annotate(f"{mib / 2**20:.0f} MiB weights", (i, rows[n]["perplexity"]), ha="center", va="bottom", fontsize=8)
    ax[1].set(ylabel="held-out perplexity", title="quality after fine-tuning")
    run.savefig(fig, "qlora")

    ratio = lo["weight_bytes"] / q["weight_bytes"]
    checks = {"both_improve": lo["gain"] > 0 and q["gain"] > 0,
              "qlora_learns_as_lora": q["gain"] >= cfg.min_gain_fraction * lo["gain"],
              "qlora_weights_smaller": ratio >= cfg.min_weight_ratio,
              "qlora_trains_in_less_memory": q["train_bytes"] < lo["train_bytes"],
              "same_trainable": lo["trainable"] == q["trainable"]}
    metrics = {"ppl_base": ppl_base, "ppl_lora": lo["perplexity"], "ppl_qlora": q["perplexity"], "weight_ratio": ratio,
               "train_mib_lora": lo["train_bytes"] / 2**20, "train_mib_qlora": q["train_bytes"] / 2**20,
               "gain_lora": lo["gain"], "gain_qlora": q["gain"], "ppl_nf4_start": q["perplexity_start"],
               "trainable": q["trainable"], "seconds_lora": lo["seconds"], "seconds_qlora": q["seconds"],
               "variants": {k: {kk: vv for kk, vv in v.items() if kk != "losses"} for k, v in rows.items()},
               "checks": checks}
    notes = (f"perplexity {ppl_base:.2f} -> LoRA {lo['perplexity']:.2f} / QLoRA {q['perplexity']:.2f}; weights "
             f"{lo['weight_bytes'] / 2**20:.0f} vs {q['weight_bytes'] / 2**20:.0f} MiB ({ratio:.1f}×), training memory "
             f"{lo['train_bytes'] / 2**20:.0f} vs {q['train_bytes'] / 2**20:.0f} MiB; gains {lo['gain']:.1%} vs "
             f"{q['gain']:.1%} (NF4 start {q['perplexity_start']:.2f}); {q['trainable']:,} trainable; time "
             f"{lo['seconds']:.0f} vs {q['seconds']:.0f} s; " + "; ".join(f"{k}={'yes' if v else 'NO'}" for k, v in checks.items()))
    return Verdict(held=all(checks.values()), metrics=metrics, notes=notes)

