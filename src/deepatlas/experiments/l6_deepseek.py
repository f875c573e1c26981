"""L6: DeepSeek-V3's pieces — MLA equals HF, bias balancing evens expert load without an aux loss.

1. Parity: our DeepSeek (deepatlas.models.deepseek) on the weights of a tiny random HF
   DeepseekV3ForCausalLM gives the same logits, in the plain and the absorbed MLA form; the
   latent cache holds (r + d_r) numbers per token and layer against 2·H·(d_k + d_v)·… for MHA.
2. Balancing (Wang et al. 2024; DeepSeek-V3 §2.1.2): small DeepSeekMoE LMs (8 fine-grained routed
   experts, top-2, one shared expert, sigmoid affinities) trained on Jane Austen's characters with
   no balancing, with the Switch auxiliary loss (α = aux_weight), and with the bias update
   b_i ← b_i + γ sign(ē − c_i), γ = bias_rate; expert-load imbalance MaxVio = (max_i c_i − ē)/ē
   on held-out text, and the val loss of each, over `seeds` seeds (mean and min–max).
3. Multi-token prediction (§2.2): the bias-balanced model with one MTP depth (λ = mtp_weight) at
   the same steps and batches — its main-head val loss (it costs one more block per step), and
   its use as a self-speculative draft: how often the MTP head's guess of token i+2 (made at i,
   given token i+1) equals the main model's greedy choice at i+1 (teacher-forced acceptance).
Held: parity ≤ 1e-4; bias balancing's MaxVio ≤ max_vio_ratio × no balancing's, with a val loss no
worse than no balancing's + loss_tolerance (mean over seeds); MTP's acceptance above chance
(1/vocab) by far (≥ 0.3).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.data.lm import char_lm_dataset
from deepatlas.models.deepseek import DeepSeek, DeepSeekConfig, deepseek_loss, from_hf
from deepatlas.nn.mla import kv_cache_bytes_per_token
from deepatlas.nn.moe import max_violation

MODES = ("none", "aux", "bias", "bias+mtp")


@dataclass
class Config:
    corpus_chars: int = 400_000
    block_size: int = 64
    batch_size: int = 16
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_routed: int = 8
    top_k: int = 2
    moe_d_ff: int = 32
    aux_weight: float = 0.01      # Switch Transformer's α
    bias_rate: float = 1e-2       # γ: DeepSeek-V3 used 1e-3 over 14.8T tokens; a few hundred steps need more
    mtp_weight: float = 0.3       # λ, DeepSeek-V3's value for the first 10T tokens
    seeds: int = 3
    eval_batches: int = 32
    max_vio_ratio: float = 0.5
    loss_tolerance: float = 0.03  # nats/char
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=300, lr=3e-3, min_lr=3e-4, warmup=20, schedule="cosine", weight_decay=0.0,
        log_every=0, progress=False))


def parity() -> dict[str, float]:
    """Max |ours − HF| on a tiny random DeepseekV3ForCausalLM, plain and absorbed MLA."""
    import transformers

    hf_cfg = transformers.DeepseekV3Config(
        vocab_size=97, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1, n_routed_experts=8,
        num_experts_per_tok=2, n_group=2, topk_group=1, first_k_dense_replace=1, q_lora_rank=16,
        kv_lora_rank=12, qk_nope_head_dim=8, qk_rope_head_dim=4, head_dim=4, v_head_dim=6,
        max_position_embeddings=64, attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.DeepseekV3ForCausalLM(hf_cfg).eval()
    ours = from_hf(hf).eval()
    idx = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(idx).logits
        return {"hf_max_abs_diff": float((ours(idx) - ref).abs().max()),
                "hf_absorbed_max_abs_diff": float((ours(idx, absorbed=True) - ref).abs().max())}


def model_config(cfg: Config, vocab: int, mode: str) -> DeepSeekConfig:
    hd = cfg.d_model // cfg.n_head
    return DeepSeekConfig(vocab_size=vocab, d_model=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head,
                          q_lora_rank=None, kv_lora_rank=cfg.d_model // 2, qk_nope_dim=hd, qk_rope_dim=hd // 2,
                          v_dim=hd, d_ff=4 * cfg.d_model, moe_d_ff=cfg.moe_d_ff, n_routed=cfg.n_routed,
                          n_shared=1, top_k=cfg.top_k, n_group=1, topk_group=1, routed_scale=1.0,
                          first_k_dense=0, max_len=cfg.block_size, balance=mode.split("+")[0],
                          bias_rate=cfg.bias_rate, n_mtp=1 if mode.endswith("mtp") else 0)


def evaluate(model: DeepSeek, data, cfg: Config) -> dict[str, float]:
    """Val loss of the main head, MaxVio of the summed held-out load, MTP draft acceptance."""
    model.eval()
    losses, loads, accepted, hits = [], None, [], []
    with torch.no_grad():
        for i in range(cfg.eval_batches):
            x, y = data.get_batch("val", i, 0, cfg.batch_size, cfg.block_size, seed=10_000)
            h = model.hidden(x)
            logits = model.lm_head(model.norm(h))
            losses.append(float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())))
            layer_loads = torch.stack([m.load for m in model.moe_layers()[:cfg.n_layer]])   # (L, E)
            loads = layer_loads if loads is None else loads + layer_loads
            if model.mtp:
                draft = model.mtp_logits(h, x)[0].argmax(-1)          # guess of t_{i+2} at i   (B, T-1)
                main_next = logits[:, 1:].argmax(-1)                  # main model's choice at i+1
                accepted.append(float((draft == main_next).float().mean()))
                hits.append(float((draft == y[:, 1:]).float().mean()))
    model.train()
    out = {"val_loss": float(np.mean(losses)),
           "max_vio": float(np.mean([max_violation(l) for l in loads]))}
    if accepted:
        out.update(mtp_acceptance=float(np.mean(accepted)), mtp_accuracy=float(np.mean(hits)))
    return out


def train_mode(cfg: Config, data, vocab: int, mode: str, seed: int, run: Run) -> dict:
    torch.manual_seed(seed)
    model = DeepSeek(model_config(cfg, vocab, mode))
    trace: list[float] = []

    def loss_fn(m: DeepSeek, batch):
        loss = deepseek_loss(m, batch, mtp_weight=cfg.mtp_weight,
                             aux_weight=cfg.aux_weight if mode == "aux" else 0.0)
        layers = m.moe_layers()[:cfg.n_layer]                # the main model's MoE layers
        trace.append(float(np.mean([max_violation(l.load) for l in layers])))
        if mode.startswith("bias"):
            for layer in m.moe_layers():
                layer.update_bias()                          # sign(ē − c_i) from this batch's load
        return loss

    get_batch = data.batch_fn("train", cfg.batch_size, cfg.block_size, seed=seed)
    tc = dataclasses.replace(cfg.train, seed=seed)
    result = train(model, loss_fn, get_batch, tc)
    row = {"mode": mode, "seed": seed, **evaluate(model, data, cfg), "train_seconds": result.seconds,
           "params": sum(p.numel() for p in model.parameters())}
    run.log(**row)
    run.print(f"{mode:9s} seed {seed}: val {row['val_loss']:.4f} MaxVio {row['max_vio']:.3f}"
              + (f" MTP acceptance {row['mtp_acceptance']:.3f}" if "mtp_acceptance" in row else ""))
    return {**row, "trace": trace}


def _smooth(x: list[float], k: int = 10) -> np.ndarray:
    x = np.asarray(x)
    return np.convolve(x, np.ones(k) / k, mode="valid") if len(x) > k else x


@experiment("L6", "deepseek-moe",
            claim="our DeepSeek-V3 equals HF DeepseekV3ForCausalLM (plain and absorbed MLA, ≤ 1e-4); "
                  "auxiliary-loss-free bias balancing evens expert load (MaxVio ≤ half of no "
                  "balancing's) without an aux loss and without hurting val loss (≤ +0.03 nats); "
                  "the MTP head drafts tokens the main model accepts (≥ 30%)",
            config=Config, one_thread=True,
            quick={"corpus_chars": 100_000, "batch_size": 8, "block_size": 32, "seeds": 1, "eval_batches": 4,
                   "train.steps": 80, "train.warmup": 10, "loss_tolerance": 0.05},
            headline={"max_vio_bias": ("MaxVio, bias balancing", "{:.2f}"),
                      "max_vio_none": ("MaxVio, no balancing", "{:.2f}"),
                      "val_loss_bias": ("val loss, bias", "{:.3f} nats/char"),
                      "mtp_acceptance": ("MTP draft acceptance", "{:.1%}")})
def deepseek_moe(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from deepatlas.data.austen import austen_corpus

    par = parity()
    run.print(f"HF parity: {par}")
    tok, data = char_lm_dataset(austen_corpus()[:cfg.corpus_chars])
    rows = [train_mode(cfg, data, len(tok), mode, seed, run) for seed in range(cfg.seeds) for mode in MODES]

    def stat(mode: str, key: str) -> tuple[float, float, float]:
        vals = [r[key] for r in rows if r["mode"] == mode]
        return float(np.mean(vals)), float(np.min(vals)), float(np.max(vals))

    metrics: dict = dict(par)
    for mode in MODES:
        name = mode.replace("+", "_")
        for key in ("val_loss", "max_vio"):
            mean, lo, hi = stat(mode, key)
            metrics[f"{key}_{name}"] = round(mean, 4)
            metrics[f"{key}_{name}_range"] = [round(lo, 4), round(hi, 4)]
    metrics["mtp_acceptance"] = round(stat("bias+mtp", "mtp_acceptance")[0], 4)
    metrics["mtp_accuracy_t_plus_2"] = round(stat("bias+mtp", "mtp_accuracy")[0], 4)
    # cache per token of the trained shape: MLA latent vs what MHA of the same heads would keep
    mc = model_config(cfg, len(tok), "bias")
    metrics["cache_bytes_per_token_mla"] = kv_cache_bytes_per_token(
        "MLA", mc.n_layer, mc.n_head, mc.qk_nope_dim + mc.qk_rope_dim, mc.v_dim,
        kv_lora_rank=mc.kv_lora_rank, rope_dim=mc.qk_rope_dim)
    metrics["cache_bytes_per_token_mha"] = kv_cache_bytes_per_token(
        "MHA", mc.n_layer, mc.n_head, mc.qk_nope_dim + mc.qk_rope_dim, mc.v_dim)
    metrics["seeds"], metrics["steps"] = cfg.seeds, cfg.train.steps
    metrics["runs"] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "trace"}
                       for r in rows]

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mode in MODES:
        trace = np.mean([r["trace"] for r in rows if r["mode"] == mode], axis=0)
        axes[0].plot(_smooth(list(trace)), label=mode)
    axes[0].set(xlabel="step", ylabel="MaxVio (batch, mean over layers)", title="expert-load imbalance")
    axes[0].legend()
    axes[1].bar(range(len(MODES)), [metrics[f"val_loss_{m.replace('+', '_')}"] for m in MODES],
                tick_label=list(MODES), color=["gray", "tab:orange", "tab:green", "tab:blue"])
    lo = min(metrics[f"val_loss_{m.replace('+', '_')}"] for m in MODES)
    axes[1].set(ylabel="val loss (nats/char)", title=f"val loss (mean of {cfg.seeds} seeds)", ylim=(lo - 0.1, None))
    fig.tight_layout()
    run.savefig(fig, "balancing")

    parity_ok = max(par.values()) <= 1e-4
    balanced = metrics["max_vio_bias"] <= cfg.max_vio_ratio * metrics["max_vio_none"]
    no_hurt = metrics["val_loss_bias"] <= metrics["val_loss_none"] + cfg.loss_tolerance
    mtp_ok = metrics["mtp_acceptance"] >= 0.3
    held = parity_ok and balanced and no_hurt and mtp_ok
    notes = (f"MaxVio none {metrics['max_vio_none']:.2f}, aux {metrics['max_vio_aux']:.2f}, bias "
             f"{metrics['max_vio_bias']:.2f}; val loss none {metrics['val_loss_none']:.3f}, aux "
             f"{metrics['val_loss_aux']:.3f}, bias {metrics['val_loss_bias']:.3f}, bias+MTP "
             f"{metrics['val_loss_bias_mtp']:.3f}; MTP acceptance {metrics['mtp_acceptance']:.2f}; "
             f"cache {metrics['cache_bytes_per_token_mla']} vs MHA {metrics['cache_bytes_per_token_mha']} B/token")
    return Verdict(held=held, metrics=metrics, notes=notes)
