"""L9 gpt1-finetune: the task data is what it says, and the quick run's pretrained model beats scratch."""
import random

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


def test_l9_gpt1_finetune_quick_runs_the_whole_pipeline(run_quick):
    """The quick setting is a smoke run (too small for transfer to show): held is not asserted."""
    from pathlib import Path

    s = run_quick("gpt1-finetune")
    m = s["metrics"]
    for task in ("pair", "choice"):
        for setting in ("pretrained", "pretrained_no_aux", "scratch"):
            assert 0.0 <= m[f"{task}_{setting}"] <= 1.0 and len(m[f"{task}_{setting}_seeds"]) == 1
        assert set(m["checks"]) == {"pair", "choice"}
    assert m["pretrain_loss"] < 3.5                   # the LM learned something (start ≈ 4.4)
    assert (Path(s["dir"]) / "table.md").read_text().count("|") > 20
