"""T5 quick run: DPO raises the rule-judged win rate against the SFT model."""
from __future__ import annotations


def test_t5_quick_holds(run_quick):
    s = run_quick("dpo")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["dpo_win_rate"] >= 0.55 and m["dpo_rule_score"] > m["sft_rule_score"]
    assert m["dpo_kl"] > 0 and m["dpo_final_reward_acc"] > 0.5    # the implicit reward separates the pairs
