"""M2 quick run: the three designs train, answer, save what `deepatlas ask-image` loads; the CLI answers."""
from __future__ import annotations

import pytest

from deepatlas.quant.weights import INSTALL_HINT, smollm2_path


@pytest.mark.skipif(smollm2_path() is None, reason=f"SmolLM2 GGUF absent: {INSTALL_HINT}")
def test_m2_quick_holds_and_the_cli_answers(run_quick, capsys):
    s = run_quick("vlm-shapes")
    m = s["metrics"]
    assert s["held"], (m, s.get("notes"))
    for d in ("text", "llava", "flamingo"):
        assert 0.0 <= m[f"acc_{d}"] <= 1.0 and m[f"trainable_params_{d}"] > 0
    assert m["trainable_params_flamingo"] > m["trainable_params_llava"] > m["trainable_params_text"]
    assert m["n_test_questions"] >= 4 * m["n_test_scenes"] - m["n_test_scenes"]   # ~one of each kind per scene

    from deepatlas.cli import main
    assert main(["ask-image", s["dir"], "--image", "0", "how many objects are there?"]) == 0
    out = capsys.readouterr().out
    assert "(truth: " in out
    assert main(["ask-image", s["dir"], "--image", "0", "what shape is the red object?", "--design", "flamingo"]) == 0
    assert main(["ask-image", s["dir"], "--image", str(m["n_test_scenes"]), "how many stars are there?"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["ask-image", s["dir"], "--image", "0", " "]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["ask-image", s["dir"] + "-missing", "--image", "0", "hi"]) == 2
    assert "no such run" in capsys.readouterr().err
