"""L9 gpt1-finetune: the task data is what it says, and the quick run's pretrained model beats scratch."""
import random

import pytest

from deepatlas.experiments.l9_gpt1_finetune import choice_examples, pair_examples, scramble_letters, segments

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. However little known the feelings or views of such a man may be")


def test_pair_and_choice_examples_hold_the_true_continuation():
    segs = segments(TEXT, 24)
    assert all(len(s) == 24 for s in segs) and "".join(segs) == TEXT[:24 * len(segs)]
    pairs = pair_examples(segs, 40, random.Random(0))
    assert pairs == pair_examples(segs, 40, random.Random(0))          # deterministic
    assert {y for *_, y in pairs} == {0, 1}
    for a, b, y in pairs:
        nxt = segs[segs.index(a) + 1]
        assert (b == nxt) == (y == 1)
        assert sorted(b.split(" ")) == sorted(nxt.split(" "))         # the negative: same words, shuffled
    for context, answers, right in choice_examples(segs, 20, random.Random(1)):
        assert len(answers) == 4 == len(set(answers))
        assert answers[right] == segs[segs.index(context) + 1]
        assert all(len(w) == 24 for w in answers)
    w = scramble_letters("acknowledged the truth", random.Random(2))
    assert w.split()[1] == "the" and w[0] == "a" and sorted(w) == sorted("acknowledged the truth")


def test_l9_gpt1_finetune_rejects_unknown_tasks():
    from deepatlas.experiments.l9_gpt1_finetune import Config, gpt1_finetune

    with pytest.raises(ValueError, match="valid: a non-empty selection of pair, choice"):
        gpt1_finetune(Config(tasks=("pair", "nsp")), None)


def test_l9_gpt1_finetune_quick_pretrained_beats_scratch_on_the_pair_task(run_quick):
    """The quick setting runs the pair task only (no λ = 0 run): the pretrained model beats scratch
    by ≥ 2 SE (150 fine-tuning steps, on an AVX2 AMD machine: seed 0 59.0% vs 50.5%, +3.8 SE; seeds 1-3:
    +6.1, +7.7, +7.2 SE. 100 steps were a knife edge there: +0.9, −0.2, +7.2 SE; the experiment's docstring)."""
    from pathlib import Path

    s = run_quick("gpt1-finetune")
    m = s["metrics"]
    assert s["held"] is True and m["checks"] == {"pair": True}, s["notes"]
    assert m["pair_gain_se"] >= 2.0 and len(m["pair_pretrained_seeds"]) == 1 and m["n_test"] == 1000
    assert m["pair_pretrained"] >= 0.56 and 0.45 <= m["pair_scratch"] <= 0.55  # scratch stays at chance
    assert "choice_pretrained" not in m and "pair_pretrained_no_aux" not in m
    assert m["pretrain_loss"] < 1.9                   # the LM learned the language (start ≈ 4.4)
    assert (Path(s["dir"]) / "table.md").read_text().count("|") >= 10
