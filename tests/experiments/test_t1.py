"""T1 quick run: LoRA near full fine-tuning at a small fraction of the parameters, above the probe."""
from __future__ import annotations


def test_t1_lora_quick_holds(run_quick):
    s = run_quick("lora")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    r = m["results"]
    assert r["probe"]["trainable"] < r["lora_r2"]["trainable"] < r["lora_r8"]["trainable"] < r["full"]["trainable"]
    assert m["lora_param_fraction"] < 0.15 and m["acc_lora_best"] > 0.5
