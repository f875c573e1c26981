"""L3: decoding strategies and the KV cache, on a GPT trained briefly on Jane Austen.

1. Exactness: decoding with the KV cache must choose the very same tokens as recomputing the
   whole sequence each step (greedy, seeded sampling, beam search; a left-padded batch).
2. Speed: without a cache step t recomputes all t positions (O(t) work per layer, O(T²) in
   total); with it only the new position is computed against the stored keys/values.
3. Strategies (Holtzman et al. 2020): maximisation (greedy, beam) tends to loop; sampling from
   the truncated distribution (top-k, top-p) is more varied. Measured with distinct-n (Li et al.
   2016: unique n-grams / all n-grams of the output words) and the share of repeated word 4-grams.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.data.lm import char_lm_dataset
from deepatlas.generation.beam import beam_search
from deepatlas.generation.decode import SamplingSettings, generate
from deepatlas.models.gpt import GPT, GPTConfig, lm_loss

PROMPTS = ["It is a truth", "Mr. Darcy", "She was", "\"My dear"]
STRATEGIES = {"greedy": SamplingSettings(),
              "beam-4": None,
              "sample T=1": SamplingSettings(greedy=False),
              "top-k=10": SamplingSettings(greedy=False, top_k=10),
              "top-p=0.9": SamplingSettings(greedy=False, top_p=0.9)}


@dataclass
class Config:
    n_layer: int = 4
    n_embd: int = 128
    block_size: int = 128
    batch_size: int = 12
    corpus_chars: int = 0               # 0 = whole corpus
    new_tokens: int = 100               # per prompt, strategy comparison
    # speed: a random GPT of this size decodes `speed_new_tokens` after a 16-token prompt
    speed_layers: int = 6
    speed_embd: int = 384
    speed_new_tokens: int = 256
    min_speedup: float = 2.0            # held needs the cache at least this much faster
    seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=1500, lr=2e-3, min_lr=2e-4, warmup=50, beta2=0.99, log_every=50,
        checkpoint_every=250))


def distinct_n(words: list[str], n: int) -> float:
    """Li et al. 2016: |unique n-grams| / |n-grams|."""
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


def time_decoding(model: GPT, prompt: list[int], n: int, use_cache: bool) -> tuple[float, list[int]]:
    start = time.perf_counter()
    out = generate(model, [prompt], n, use_cache=use_cache)[0]
    return n / (time.perf_counter() - start), out


@experiment("L3", "decoding",
            claim="decoding with the KV cache chooses exactly the tokens of full recomputation "
                  "(greedy, sampled, beam, padded batch) and is faster by a measured factor "
                  "(≥ 2× at 256 new tokens); greedy and beam outputs are less diverse (distinct-2) "
                  "than top-k / top-p samples",
            config=Config,
            quick={"n_layer": 2, "batch_size": 8, "corpus_chars": 300000, "train.steps": 150,
                   "train.lr": 3e-3, "new_tokens": 60, "speed_layers": 2, "speed_embd": 128,
                   "speed_new_tokens": 112, "min_speedup": 1.2},
            headline={"identical_all": ("cached = uncached, every strategy", "{}"),
                      "cache_speedup": ("KV-cache speed-up", "{:.1f}×"),
                      "cached_tokens_per_s": ("cached decode", "{:.0f} tok/s")})
def decoding(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepatlas.data.austen import austen_corpus

    torch.manual_seed(cfg.seed)
    text = austen_corpus()
    text = text[:cfg.corpus_chars] if cfg.corpus_chars else text
    vocab, data = char_lm_dataset(text)
    model = GPT(GPTConfig(vocab_size=len(vocab), block_size=cfg.block_size, n_layer=cfg.n_layer,
                          n_head=4, n_embd=cfg.n_embd))
    train(model, lm_loss, data.batch_fn("train", cfg.batch_size, cfg.block_size, cfg.seed),
          cfg.train, run=run, checkpoint_dir=run.checkpoint_dir, resume=run.resuming)
    model.eval()
    prompts = [vocab.encode(p) for p in PROMPTS]

    # 1. exactness: cached == uncached, token for token
    exact = {}
    for name, s in (("greedy", SamplingSettings()),
                    ("top-p sample", SamplingSettings(greedy=False, temperature=0.9, top_p=0.9,
                                                      repetition_penalty=1.1))):
        a = generate(model, prompts, cfg.new_tokens, s, use_cache=True, seed=cfg.seed)
        b = generate(model, prompts, cfg.new_tokens, s, use_cache=False, seed=cfg.seed)
        exact[name] = torch.equal(torch.tensor(a), torch.tensor(b))
    ba = beam_search(model, prompts[0], 4, cfg.new_tokens // 2, use_cache=True)
    bb = beam_search(model, prompts[0], 4, cfg.new_tokens // 2, use_cache=False)
    exact["beam-4"] = [h.tokens for h in ba] == [h.tokens for h in bb]
    run.print(f"cached == uncached: {exact}")

    # 2. speed on a random GPT of the stated size, batch 1, greedy
    speed_model = GPT(GPTConfig(vocab_size=len(vocab), n_layer=cfg.speed_layers, n_head=4 if
                                cfg.speed_embd < 256 else 6, n_embd=cfg.speed_embd,
                                block_size=16 + cfg.speed_new_tokens)).eval()
    prompt = data.split("val")[:16].tolist()
    time_decoding(speed_model, prompt, 8, True)                     # warm-up
    tps_cache, out_cache = time_decoding(speed_model, prompt, cfg.speed_new_tokens, True)
    tps_plain, out_plain = time_decoding(speed_model, prompt, cfg.speed_new_tokens, False)
    exact["speed model greedy"] = out_cache == out_plain
    speedup = tps_cache / tps_plain
    run.print(f"{cfg.speed_new_tokens} new tokens: {tps_cache:.1f} tok/s cached, "
              f"{tps_plain:.1f} tok/s recomputed: {speedup:.2f}×")

    # 3. strategies: diversity and repetition of the words they produce
    table, samples = {}, []
    for name, s in STRATEGIES.items():
        if s is None:
            outs = [beam_search(model, p, 4, cfg.new_tokens)[0].tokens for p in prompts]
        else:
            outs = generate(model, prompts, cfg.new_tokens, s, seed=cfg.seed)
        words = " ".join(vocab.decode(o) for o in outs).split()
        table[name] = {"distinct_1": distinct_n(words, 1), "distinct_2": distinct_n(words, 2),
                       "repeated_4grams": 1 - distinct_n(words, 4)}
        samples.append(f"== {name}\n{PROMPTS[0]}{vocab.decode(outs[0])}\n")
        run.log(strategy=name, **table[name])
    (run.dir / "samples.txt").write_text("\n".join(samples))
    for name, row in table.items():
        run.print(f"  {name:12} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.bar(["cached", "recomputed"], [tps_cache, tps_plain], color=["C2", "C3"])
    ax1.set(ylabel="tokens / s", title=f"greedy, {cfg.speed_new_tokens} new tokens ({speedup:.1f}×)")
    names = list(table)
    for i, key in enumerate(("distinct_2", "repeated_4grams")):
        ax2.bar([j + 0.4 * i for j in range(len(names))], [table[n][key] for n in names], 0.4, label=key)
    ax2.set_xticks([j + 0.2 for j in range(len(names))], names, rotation=20)
    ax2.set(title="word diversity of the outputs")
    ax2.legend()
    run.savefig(fig, "decoding")

    maximising = max(table["greedy"]["distinct_2"], table["beam-4"]["distinct_2"])
    sampling = min(table["top-k=10"]["distinct_2"], table["top-p=0.9"]["distinct_2"])
    held = all(exact.values()) and speedup >= cfg.min_speedup and sampling > maximising
    metrics = {"identical_" + k.replace(" ", "_").replace("-", "_"): v for k, v in exact.items()}
    metrics["identical_all"] = all(exact.values())
    metrics.update(cached_tokens_per_s=round(tps_cache, 1), uncached_tokens_per_s=round(tps_plain, 1),
                   cache_speedup=round(speedup, 2),
                   sampling_more_diverse_than_greedy_beam=sampling > maximising,
                   **{f"{k}_{n}".replace(" ", "_").replace("=", "").replace("-", "_"): round(v, 3)
                      for n, row in table.items() for k, v in row.items()})
    return Verdict(held=held, metrics=metrics,
                   notes=f"cache {speedup:.2f}× faster (needs ≥ {cfg.min_speedup}); outputs identical: "
                         f"{all(exact.values())}; distinct-2 greedy/beam ≤ {maximising:.3f} vs "
                         f"top-k/top-p ≥ {sampling:.3f}")
