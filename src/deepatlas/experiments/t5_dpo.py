"""T5: DPO — preference optimisation without a reward model or an RL loop, side by side with PPO.

Same SFT model (T3, cached), same rule and the same kind of preference pairs as T4 (best vs worst
of k SFT samples per "continue the sentence" prompt under data.rule_score). DPO minimises
− log σ(β [log π/π_ref (y_w) − log π/π_ref (y_l)]) (alignment.dpo; loss_type="ipo" for IPO)
over the pairs, the reference log-probs computed once. PPO is T4's: a Bradley–Terry reward model
on the same pairs, then PPO with the KL penalty. Both are measured on held-out prompts: win rate
against the SFT model judged by the rule, the rule's score, KL to the SFT reference, wall time.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from deepatlas.alignment.base import QUICK_STAGES, BaseConfig, ChatLM, cached_base, save_chat_lm
from deepatlas.alignment.dpo import LOSS_TYPES, dpo_step, response_logps
from deepatlas.alignment.ppo import PPOConfig
from deepatlas.alignment.preferences import continue_prompts, conversation_tensors, evaluate_policy, rule_pairs, sample
from deepatlas.alignment.sft import SFTConfig, cached_sft
from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.experiments.t4_rlhf import reward_model, run_ppo


@dataclass
class Config:
    base: BaseConfig = field(default_factory=BaseConfig)
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=500, batch_size=16, lr=2e-3))
    train_examples: int = 8000
    pair_prompts: int = 600
    heldout_prompts: int = 150
    k: int = 4
    max_new_tokens: int = 10
    beta: float = 0.1
    loss_type: str = "sigmoid"     # sigmoid (DPO) | ipo | hinge
    dpo_steps: int = 150
    dpo_batch: int = 32
    dpo_lr: float = 5e-4
    compare_ppo: bool = True       # also train T4's reward model + PPO on the same pairs
    rm_steps: int = 150
    rm_lr: float = 2e-3
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(iterations=40, rollouts=48, max_new_tokens=10,
                                                             ppo_epochs=4, minibatch=32, lr=3e-4, kl_coef=0.2))
    # held: DPO's win rate against SFT (rule-judged, ties ½) ≥ min_win_rate
    min_win_rate: float = 0.6
    seed: int = 0


QUICK = {**QUICK_STAGES, "pair_prompts": 160, "heldout_prompts": 48, "dpo_steps": 40, "dpo_batch": 16,
         "compare_ppo": False,
         "dpo_lr": 1e-3, "rm_steps": 80, "rm_lr": 2e-3, "ppo.iterations": 20, "ppo.rollouts": 32,
         "ppo.minibatch": 16, "ppo.ppo_epochs": 2, "ppo.lr": 3e-4, "min_win_rate": 0.55}


def train_dpo(sft: ChatLM, pairs, cfg: Config, run: Run) -> tuple[ChatLM, list[dict]]:
    if cfg.loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={cfg.loss_type!r}; valid: {', '.join(LOSS_TYPES)}")
    ids, _, resp = conversation_tensors(sft, pairs.chosen + pairs.rejected)   # (2N, L), one width
    n = len(pairs.chosen)
    with torch.no_grad():                                          # the frozen reference, once
        ref = response_logps(sft.model.eval(), ids, resp)
    policy = sft.copy()
    opt = torch.optim.AdamW(policy.model.parameters(), lr=cfg.dpo_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed)
    history = []
    policy.model.train()
    for step in range(cfg.dpo_steps):
        b = torch.randint(0, n, (cfg.dpo_batch,), generator=g)
        stats = dpo_step(policy.model, opt, (ids[b], resp[b]), (ids[n + b], resp[n + b]), ref[b], ref[n + b],
                         cfg.beta, cfg.loss_type)
        history.append(stats)
        run.log(step=step, **stats)
    policy.model.eval()
    return policy, history


@experiment("T5", "dpo",
            claim="DPO on the preference pairs raises the win rate against the SFT model (judged by the "
                  "held-out rule) without a reward model or an RL loop; PPO on the same pairs shown beside "
                  "it (win rate, KL to the reference, wall time)",
            config=Config, one_thread=True, quick=QUICK,
            headline={"dpo_win_rate": ("DPO win rate vs SFT", "{:.0%}"),
                      "dpo_kl": ("DPO KL to SFT", "{:.2f} nats"),
                      "dpo_seconds": ("DPO time", "{:.1f} s"),
                      "ppo_win_rate": ("PPO win rate vs SFT", "{:.0%}"),
                      "ppo_seconds": ("PPO time (RM + RL)", "{:.1f} s")})
def dpo(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base, _ = cached_base(cfg.base, run.print)
    sft, _ = cached_sft(base, asdict(cfg.base), cfg.train_examples, cfg.sft)
    train_users = continue_prompts(cfg.pair_prompts, "train", cfg.seed)
    test_users = continue_prompts(cfg.heldout_prompts, "heldout", cfg.seed)
    pairs = rule_pairs(sft, train_users, cfg.k, cfg.max_new_tokens, cfg.seed)
    run.print(f"{len(pairs.users)} preference pairs from {len(train_users)} prompts")
    sft_replies = sample(sft, test_users, cfg.max_new_tokens, cfg.seed + 7)
    evals = {"sft": evaluate_policy(sft, sft, test_users, cfg.max_new_tokens, cfg.seed + 7, sft_replies)}

    t = time.time()
    policy, history = train_dpo(sft, pairs, cfg, run)
    seconds = {"dpo": time.time() - t}
    evals["dpo"] = evaluate_policy(policy, sft, test_users, cfg.max_new_tokens, cfg.seed + 7, sft_replies)
    save_chat_lm(run.dir, policy)
    save_chat_lm(run.dir / "dpo", policy)
    save_chat_lm(run.dir / "sft", sft)
    if cfg.compare_ppo:
        t = time.time()
        rm, _ = reward_model(sft, pairs, cfg)
        ppo_policy, _, _ = run_ppo(sft, rm, train_users, cfg, cfg.ppo.kl_coef, run, "ppo")
        seconds["ppo"] = time.time() - t
        evals["ppo"] = evaluate_policy(ppo_policy, sft, test_users, cfg.max_new_tokens, cfg.seed + 7, sft_replies)
        save_chat_lm(run.dir / "ppo", ppo_policy)
    for tag, e in evals.items():
        run.print(f"{tag:4s} win vs SFT {e['win_rate']:.0%}  rule {e['rule_score']:+.2f}  KL {e['kl']:.2f}  "
                  f"ends turn {e['ends_turn']:.0%}" + (f"  ({seconds[tag]:.1f} s)" if tag in seconds else ""))
    lines = ["prompt\tsft\tdpo" + ("\tppo" if "ppo" in evals else "")]
    for i, u in enumerate(test_users):
        lines.append("\t".join([u] + [evals[k]["replies"][i].text for k in evals]))
    (run.dir / "samples.tsv").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["margin"] for h in history], lw=0.8, label="implicit reward margin r̂_w − r̂_l")
    ax.plot([h["loss"] for h in history], lw=0.8, label=f"{cfg.loss_type} loss")
    ax.set_xlabel("DPO step"), ax.legend(), ax.set_title(f"T5 DPO (β={cfg.beta})")
    run.savefig(fig, "dpo")

    d = evals["dpo"]
    metrics = {"pairs": len(pairs.users), "dpo_final_reward_acc": sum(h["reward_acc"] for h in history[-10:]) / 10,
               "dpo_final_margin": history[-1]["margin"]}
    for tag, e in evals.items():
        metrics.update({f"{tag}_{k}": v for k, v in e.items() if k != "replies"})
    metrics.update({f"{tag}_seconds": s for tag, s in seconds.items()})
    ppo_note = (f"; PPO {evals['ppo']['win_rate']:.0%} at KL {evals['ppo']['kl']:.2f} in {seconds['ppo']:.1f} s"
                if "ppo" in evals else "")
    return Verdict(held=d["win_rate"] >= cfg.min_win_rate, metrics=metrics,
                   notes=f"DPO win rate vs SFT {d['win_rate']:.0%} (rule {evals['sft']['rule_score']:+.2f} -> "
                         f"{d['rule_score']:+.2f}) at KL {d['kl']:.2f} in {seconds['dpo']:.1f} s" + ppo_note)
