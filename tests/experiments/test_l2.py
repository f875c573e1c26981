"""L2 quick run: the GPT's val bits/char falls ≥ 1 bit below the unigram entropy."""
from __future__ import annotations

from deepatlas.generation.runfolder import load_language_model


def test_l2_quick_holds_and_leaves_a_sampleable_model(run_quick):
    s = run_quick("gpt-pretrain")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["val_bits_per_char"] < m["unigram_entropy_bits"] - 1.0
    lm = load_language_model(s["dir"])        # what `deepatlas sample RUN_DIR` loads
    assert lm.kind == "char" and lm.decode(lm.encode("Emma")) == "Emma"
