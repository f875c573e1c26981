"""L2 training speed as the learner feels it: tokens per second of gpt-pretrain's recipe, and the
speedrun's time to the reference's loss.

* gpt_pretrain_tokens_per_s: one training step of gpt-pretrain's full setting (nanoGPT's CPU
  recipe: GPT-2 architecture, 4 layers × 128 dims, context 64, batch 12, AdamW with decay on
  matrices, clipping at 1.0), ours vs HF GPT2LMHeadModel holding the same weights in the same
  loop. Tokens/s = 12 × 64 / seconds per step. Goal ≥ 1.0.
* speedrun_time_to_target: gpt-speedrun's race for one seed at its full setting (reference:
  nanoGPT's CPU recipe, lr 1e-3, 2000 steps; speedrun 1000 steps; lock step): ratio = the
  reference's training seconds / the seconds the speedrun needs to reach the reference's final val
  loss. Goal ≥ 2.0 (half the time).
"""
from __future__ import annotations

import torch

from bench.bench_gpt import _hf_twin
from bench.common import interleaved_median_times, result
from deepatlas.models.gpt import GPT, GPTConfig, lm_loss


def gpt_pretrain_tokens_per_s(B: int = 12, T: int = 64, steps: int = 20, repeats: int = 5) -> dict:
    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=80, block_size=T, n_layer=4, n_head=4, n_embd=128, dropout=0.0))
    hf = _hf_twin(ours)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 80, (B, T + 1), generator=g) for _ in range(steps)]

    def loop(model, loss_fn):
        decay = [p for p in model.parameters() if p.dim() >= 2]
        other = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.99), fused=True)

        def run():
            for x in batches:
                loss = loss_fn(model, x)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
        return run

    t = interleaved_median_times({
        "ours": loop(ours, lambda m, x: lm_loss(m, (x[:, :-1], x[:, 1:]))),
        "hf": loop(hf, lambda m, x: m(x[:, :-1], labels=x[:, :-1]).loss)}, warmup=1, repeats=repeats)
    tokens = steps * B * T
    return result("gpt_pretrain_tokens_per_s", "tokens/s", tokens / t["ours"], tokens / t["hf"],
                  "HF GPT2LMHeadModel, same loop", 1.0, higher_is_better=True)


def speedrun_time_to_target() -> dict:
    from deepatlas.core.train import TrainConfig
    from deepatlas.experiments.l2_speedrun import (REFERENCE_TRAIN, Config, Trainee, austen_chars, model_options,
                                                   race, time_to_reach, train_options)

    cfg = Config(seeds=(0,))
    data, vocab = austen_chars()

    class _Quiet:
        def log(self, **_):
            pass

    ref = Trainee("reference", {}, TrainConfig(steps=cfg.reference_steps, **REFERENCE_TRAIN), cfg, vocab, 0)
    fast = Trainee("speedrun", model_options(cfg.speedrun), train_options(cfg.speedrun, cfg.speedrun_steps), cfg,
                   vocab, 0)
    race([ref, fast], data, cfg, _Quiet())
    reach = time_to_reach(fast.curve, ref.curve[-1][2])
    if reach is None:
        raise RuntimeError(f"the speedrun never reached the reference's {ref.curve[-1][2]:.3f} "
                           f"(it ended at {fast.curve[-1][2]:.3f})")
    return result("speedrun_time_to_target", "s", reach, ref.seconds, "nanoGPT CPU recipe (lr 1e-3), its whole run",
                  2.0) | {"reference_val": round(ref.curve[-1][2], 4), "speedrun_val": round(fast.curve[-1][2], 4)}


BENCHMARKS = [gpt_pretrain_tokens_per_s, speedrun_time_to_target]
