"""T4 quick run: the reward model ranks held-out pairs; PPO raises the reward at bounded KL; β = 0 hacks."""
from __future__ import annotations

import math


def test_t4_quick_holds(run_quick):
    s = run_quick("rlhf")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["rm_heldout_acc"] >= 0.65
    assert m["ppo_rm_score"] > m["sft_rm_score"] + 0.3 and m["ppo_kl"] <= 8.0
    assert m["kl0_kl"] >= 1.5 * m["ppo_kl"] and m["kl0_rule_score"] < m["ppo_rule_score"] and m["reward_hacked"]
    assert math.isnan(m["judge_agreement"]) or 0.0 <= m["judge_agreement"] <= 1.0
