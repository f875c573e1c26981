"""S6 quick run: 2 gloo processes (DDP; FSDP without clipping) equal one process accumulating the
same half-batches bit for bit, and the whole-batch run to fp32 rounding over the first steps."""
from __future__ import annotations


def test_s6_quick_holds(run_quick):
    s = run_quick("distributed-training")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["ddp_bitwise_equal_accumulated"] and m["ddp_vs_accumulated_max_loss_diff"] == 0.0
    assert m["fsdp_bitwise_equal_accumulated"] and m["fsdp_vs_accumulated_max_weight_diff"] == 0.0
    assert m["ddp_vs_whole_early_max_loss_diff"] <= 1e-5        # another summation order: rounding only
    assert 0.45 <= m["fsdp_params_per_rank_fraction"] <= 0.51
