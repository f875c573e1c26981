"""T4 quick run: the reward model ranks held-out pairs; PPO raises the reward at bounded KL; β = 0 drifts
further from the SFT reference.

Not asserted: the rule-measured reward hacking ("held" needs the β = 0 policy to score lower on the
rule than PPO's). It does not hold in T4's full run either (β = 0 rule +1.25 vs PPO +1.11, README),
and at the quick setting it flips with the machine's rounding: held on the Intel machines of earlier
stops, not on this workplace's AMD machine (β = 0 KL 2.44 vs PPO 2.05, rule +0.52 vs +0.46; with 25
PPO iterations KL 3.76 vs 2.31, rule +0.79 vs +0.69)."""
from __future__ import annotations

import math


def test_t4_quick_reward_model_and_ppo_learn(run_quick):
    s = run_quick("rlhf")
    m = s["metrics"]
    assert m["rm_heldout_acc"] >= 0.65, m
    assert m["ppo_rm_score"] > m["sft_rm_score"] + 0.3 and m["ppo_kl"] <= 8.0, m
    assert m["kl0_kl"] > m["ppo_kl"], m                      # no KL penalty: further from the reference
    assert math.isnan(m["judge_agreement"]) or 0.0 <= m["judge_agreement"] <= 1.0
    print(f"reward hacked (not asserted): {m['reward_hacked']}; held: {s['held']}")
