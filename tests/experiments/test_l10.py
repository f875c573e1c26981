"""L10 quick run: past the trained length RoPE's loss rises, ALiBi's the least; rescaling RoPE helps."""


def test_l10_long_context_quick_holds(run_quick):
    s = run_quick("long-context")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["rise_alibi"] < m["rise_rope"] and m["rise_alibi"] < m["rise_learned"]
    assert m["eval_len"] == 4 * m["train_len"]
    assert min(m["far_loss_rope+ntk"], m["far_loss_rope+yarn"], m["far_loss_rope+pi"]) < m["far_loss_rope"]
