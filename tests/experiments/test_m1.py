"""M1 quick run: a tiny CLIP on shape scenes classifies zero-shot, retrieves, and names unseen pairs."""
from __future__ import annotations

import pytest

from deepatlas.experiments.m1_clip import CONTEXT, EOT, HELD_OUT, PAD, SOT, tokenize


def test_tokenize_pads_after_eot_and_rejects_unknown_words():
    ids = tokenize(["a red star", "a large blue circle at the top left"])
    assert ids.shape == (2, CONTEXT)
    assert ids[0, 0] == SOT and ids[0, 4] == EOT and (ids[0, 5:] == PAD).all()
    with pytest.raises(ValueError, match="vocabulary"):
        tokenize(["a purple star"])


def test_m1_quick_holds(run_quick):
    s = run_quick("clip-shapes")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["zs_colour_acc"] > 2 / 6 and m["zs_shape_acc"] > 0.3 and all(m["checks"].values())
    assert m["i2t_recall_at_5"] > 5 * m["retrieval_chance_at_5"]
    assert m["n_held_out_test_images"] > 0 and m["pair_acc_held_out"] > 2 * m["pair_chance"]
    assert 0 < m["logit_scale"] <= 100.0 + 1e-3
    assert len(HELD_OUT) == 4
