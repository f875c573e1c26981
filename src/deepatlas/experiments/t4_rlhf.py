"""T4: RLHF — a Bradley–Terry reward model and PPO with a KL penalty; RLAIF with SmolLM2 as judge.

Start: the SFT model of T3 (cached). Task: "continue the sentence" prompts. The rule a person
would accept (deepatlas.alignment.data.rule_score): a better continuation is made of real words
and is cheerful — a point per distinct corpus word, two more per pleasant word, two fewer per
unpleasant one — and it ends its turn; repeating a word earns nothing. Pairs: best vs worst of k SFT samples per prompt under the rule (alignment.preferences).

1. reward model = the SFT GPT + a scalar head, trained with − log σ(r_w − r_l); accuracy on
   held-out pairs (held-out lines and phrasing).
2. PPO (alignment.ppo) against the reward model with β = kl_coef, and again with β = 0.
   Measured on held-out prompts: reward-model score, the rule's score, win rate vs SFT, KL to
   the SFT reference, share of distinct words.
3. RLAIF: SmolLM2-135M-Instruct scores replies (alignment.judge); its agreement with the rule on
   held-out pairs is reported; in the full setting its labels train a second reward model and PPO.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from deepatlas.alignment.data import prompt_text
from deepatlas.alignment.base import QUICK_STAGES, BaseConfig, ChatLM, cached_base, save_chat_lm
from deepatlas.alignment.ppo import PPOConfig, train_ppo
from deepatlas.alignment.preferences import (Pairs, conversation_tensors, continue_prompts, evaluate_policy,
                                             rm_reward_fn, rule_pairs, sample, score_reply)
from deepatlas.alignment.reward import RewardModel, pair_accuracy, train_reward_model
from deepatlas.alignment.sft import SFTConfig, cached_sft
from deepatlas.chat.template import IM_END
from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run


@dataclass
class Config:
    base: BaseConfig = field(default_factory=BaseConfig)
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=500, batch_size=16, lr=2e-3))
    train_examples: int = 8000
    pair_prompts: int = 600        # training prompts; k samples each
    heldout_prompts: int = 150
    k: int = 4
    max_new_tokens: int = 10
    rm_steps: int = 150
    rm_lr: float = 2e-3
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(iterations=40, rollouts=48, max_new_tokens=10,
                                                             ppo_epochs=4, minibatch=24, lr=3e-4, kl_coef=0.2))
    judge_pairs: int = 40          # held-out pairs SmolLM2 labels (agreement with the rule)
    rlaif: bool = False            # True: SmolLM2 labels training pairs -> a reward model -> PPO
    rlaif_pairs: int = 80          # training prompts (k replies each) the judge scores
    # held: RM held-out accuracy ≥ min_rm_acc; PPO raises the RM score by ≥ min_rise with KL ≤ max_kl;
    # reward hacking at β = 0: ≥ hack_kl_factor × PPO's KL, a reward-model score ≥ hack_rm_share of
    # PPO's, yet a lower score under the rule the reward model was meant to learn
    min_rm_acc: float = 0.7
    min_rise: float = 0.5
    max_kl: float = 8.0
    hack_kl_factor: float = 1.5
    hack_rm_share: float = 0.9
    seed: int = 0


QUICK = {**QUICK_STAGES, "pair_prompts": 160, "heldout_prompts": 48, "rm_steps": 60, "rm_lr": 2e-3,
         "ppo.iterations": 15, "ppo.rollouts": 32, "ppo.minibatch": 16, "ppo.ppo_epochs": 2,
         "ppo.lr": 3e-4, "judge_pairs": 8, "rlaif": False, "min_rm_acc": 0.65, "min_rise": 0.3}


def pair_tensors(lm: ChatLM, pairs: Pairs):
    ids, real, _ = conversation_tensors(lm, pairs.chosen + pairs.rejected)   # one common width
    n = len(pairs.chosen)
    return (ids[:n], real[:n]), (ids[n:], real[n:])


def reward_model(sft: ChatLM, pairs: Pairs, cfg: Config) -> tuple[RewardModel, list[float]]:
    rm = RewardModel(sft.model)
    chosen, rejected = pair_tensors(sft, pairs)
    return rm, train_reward_model(rm, chosen, rejected, cfg.rm_steps, 32, cfg.rm_lr, cfg.seed)


def run_ppo(sft: ChatLM, rm: RewardModel, users, cfg: Config, kl_coef: float, run: Run, tag: str):
    prompts = [sft.encode(prompt_text(u)) for u in users]
    pcfg = PPOConfig(**{**asdict(cfg.ppo), "kl_coef": kl_coef, "max_new_tokens": cfg.max_new_tokens})
    start = time.time()
    gpt, history = train_ppo(sft.model, rm_reward_fn(rm), prompts, pcfg, sft.token(IM_END),
                             sft.token("<|endoftext|>"), log=lambda s: run.log(run=tag, **s))
    return ChatLM(gpt, sft.bpe), history, time.time() - start


@experiment("T4", "rlhf",
            claim="a Bradley–Terry reward model ranks held-out preference pairs well above chance; PPO "
                  "against it raises the reward while the KL to the SFT reference stays bounded; with the "
                  "KL coefficient at 0 the policy drifts far from the reference and reward-hacks",
            config=Config, one_thread=True, quick=QUICK,
            headline={"rm_heldout_acc": ("reward model held-out accuracy", "{:.0%}"),
                      "ppo_rm_rise": ("PPO reward rise", "{:+.2f}"),
                      "ppo_kl": ("PPO KL to SFT", "{:.2f} nats"),
                      "ppo_win_rate": ("PPO win rate vs SFT (rule)", "{:.0%}"),
                      "kl0_kl": ("β=0 KL to SFT", "{:.2f} nats"),
                      "judge_agreement": ("SmolLM2 judge agrees with the rule", "{:.0%}")})
def rlhf(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base, _ = cached_base(cfg.base, run.print)
    sft, _ = cached_sft(base, asdict(cfg.base), cfg.train_examples, cfg.sft)
    save_chat_lm(run.dir / "sft", sft)
    train_users = continue_prompts(cfg.pair_prompts, "train", cfg.seed)
    test_users = continue_prompts(cfg.heldout_prompts, "heldout", cfg.seed)
    t = time.time()
    pairs = rule_pairs(sft, train_users, cfg.k, cfg.max_new_tokens, cfg.seed)
    test_pairs = rule_pairs(sft, test_users, cfg.k, cfg.max_new_tokens, cfg.seed + 1)
    run.print(f"{len(pairs.users)} training pairs from {len(train_users)} prompts × {cfg.k} samples, "
              f"{len(test_pairs.users)} held-out pairs ({time.time() - t:.1f} s)")
    rm, rm_losses = reward_model(sft, pairs, cfg)
    rm_acc = pair_accuracy(rm, *pair_tensors(sft, test_pairs))
    run.print(f"reward model: held-out pair accuracy {rm_acc:.1%} (final BT loss {rm_losses[-1]:.3f})")

    sft_replies = sample(sft, test_users, cfg.max_new_tokens, cfg.seed + 7)
    evals = {"sft": evaluate_policy(sft, sft, test_users, cfg.max_new_tokens, cfg.seed + 7, sft_replies, rm)}
    histories, seconds = {}, {}
    for tag, beta in (("ppo", cfg.ppo.kl_coef), ("kl0", 0.0)):
        policy, histories[tag], seconds[tag] = run_ppo(sft, rm, train_users, cfg, beta, run, tag)
        evals[tag] = evaluate_policy(policy, sft, test_users, cfg.max_new_tokens, cfg.seed + 7, sft_replies, rm)
        save_chat_lm(run.dir if tag == "ppo" else run.dir / "ppo_kl0", policy)
        if tag == "ppo":
            save_chat_lm(run.dir / "ppo", policy)

    judge_agreement, judge_calls, judge_s = float("nan"), 0, 0.0
    if cfg.judge_pairs > 0:
        from deepatlas.alignment.judge import SmolJudge

        t = time.time()
        judge = SmolJudge()
        n = min(cfg.judge_pairs, len(test_pairs.users))
        sc = judge.scores([r.text for r in test_pairs.chosen[:n]] + [r.text for r in test_pairs.rejected[:n]])
        judge_agreement = sum(a > b for a, b in zip(sc[:n], sc[n:])) / n
        judge_calls, judge_s = judge.calls, time.time() - t
        run.print(f"SmolLM2 judge agrees with the rule on {judge_agreement:.0%} of {n} held-out pairs "
                  f"({judge_calls} calls, {judge_s:.1f} s with loading)")
        if cfg.rlaif:
            ai_scores = {}

            def ai_judge(reply) -> float:          # the judge's score, the rule's turn-end penalty
                if reply.text not in ai_scores:
                    ai_scores[reply.text] = judge.scores([reply.text])[0]
                return ai_scores[reply.text] - (0.0 if reply.ended else 10.0)
            ai_pairs = rule_pairs(sft, train_users[:cfg.rlaif_pairs], cfg.k, cfg.max_new_tokens, cfg.seed, ai_judge)
            ai_rm, _ = reward_model(sft, ai_pairs, cfg)
            evals["rlaif_rm_rule_acc"] = pair_accuracy(ai_rm, *pair_tensors(sft, test_pairs))
            policy, histories["rlaif"], seconds["rlaif"] = run_ppo(sft, ai_rm, train_users, cfg,
                                                                   cfg.ppo.kl_coef, run, "rlaif")
            evals["rlaif"] = evaluate_policy(policy, sft, test_users, cfg.max_new_tokens, cfg.seed + 7,
                                             sft_replies, rm)
            save_chat_lm(run.dir / "rlaif", policy)

    for tag in ("sft", "ppo", "kl0", "rlaif"):
        if tag in evals:
            e = evals[tag]
            run.print(f"{tag:5s} RM score {e['rm_score']:+.2f}  rule {e['rule_score']:+.2f}  win vs SFT "
                      f"{e['win_rate']:.0%}  KL {e['kl']:.2f}  ends turn {e['ends_turn']:.0%}  distinct "
                      f"{e['distinct']:.2f}")
    lines = ["prompt\tsft\tppo\tppo_kl0"] + ["\t".join([u, evals["sft"]["replies"][i].text,
                                                       evals["ppo"]["replies"][i].text, evals["kl0"]["replies"][i].text])
                                             for i, u in enumerate(test_users)]
    (run.dir / "samples.tsv").write_text("\n".join(lines) + "\n")
    run.print("β = 0 samples (reward hacking):\n" + "\n".join(
        f"  {evals['kl0']['replies'][i].text!r}  (RM favours it; SFT said {evals['sft']['replies'][i].text!r})"
        for i in range(4)))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for tag, h in histories.items():
        axes[0].plot([s["score"] for s in h], label=tag)
        axes[1].plot([s["kl_k1"] for s in h], label=tag)
    axes[0].set_ylabel("reward-model score of rollouts"), axes[1].set_ylabel("KL to SFT (k1, nats/response)")
    for ax in axes:
        ax.set_xlabel("PPO iteration"), ax.legend()
    run.savefig(fig, "ppo")

    ppo, kl0, first = evals["ppo"], evals["kl0"], histories["ppo"][0]["score"]
    rise = ppo["rm_score"] - evals["sft"]["rm_score"]
    hacked = (kl0["kl"] >= cfg.hack_kl_factor * ppo["kl"] and kl0["rm_score"] >= cfg.hack_rm_share * ppo["rm_score"]
              and kl0["rule_score"] < ppo["rule_score"])
    held = rm_acc >= cfg.min_rm_acc and rise >= cfg.min_rise and ppo["kl"] <= cfg.max_kl and hacked
    metrics = {"reward_hacked": hacked, "pairs": len(pairs.users), "heldout_pairs": len(test_pairs.users), "rm_heldout_acc": rm_acc,
               "rm_final_loss": rm_losses[-1], "ppo_rm_rise": rise, "first_rollout_score": first,
               "judge_agreement": judge_agreement, "judge_calls": judge_calls, "judge_seconds": judge_s,
               "ppo_seconds_per_sample": seconds["ppo"] / (cfg.ppo.iterations * cfg.ppo.rollouts)}
    for tag in ("sft", "ppo", "kl0", "rlaif"):
        if tag in evals:
            metrics.update({f"{tag}_{k}": v for k, v in evals[tag].items() if k != "replies"})
    if "rlaif_rm_rule_acc" in evals:
        metrics["rlaif_rm_rule_acc"] = evals["rlaif_rm_rule_acc"]
    metrics.update({f"{tag}_seconds": s for tag, s in seconds.items()})
    return Verdict(held=held, metrics=metrics,
                   notes=f"RM held-out accuracy {rm_acc:.0%}; PPO (β={cfg.ppo.kl_coef}) RM score "
                         f"{evals['sft']['rm_score']:+.2f} -> {ppo['rm_score']:+.2f} at KL {ppo['kl']:.2f}, win "
                         f"{ppo['win_rate']:.0%}; β=0: RM {kl0['rm_score']:+.2f}, KL {kl0['kl']:.2f}, win "
                         f"{kl0['win_rate']:.0%}, rule {kl0['rule_score']:+.2f} vs PPO {ppo['rule_score']:+.2f}, "
                         f"distinct words {kl0['distinct']:.2f} vs SFT {evals['sft']['distinct']:.2f}")
