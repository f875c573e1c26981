"""A3 quick run: the Transformer decodes held-out longer sentences exactly (≥ 95%)."""


def test_a3_quick_holds(run_quick):
    s = run_quick("transformer-translate")
    assert s["held"], s["metrics"]
    assert s["metrics"]["heldout_sentences"] >= 100
