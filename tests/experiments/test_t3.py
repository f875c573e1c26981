"""T3 quick run: after SFT the GPT ends its turn and answers held-out prompts; the base does not."""
from __future__ import annotations

from deepatlas.alignment.base import run_chat_model


def test_t3_quick_holds_and_leaves_chat_models(run_quick):
    s = run_quick("sft")
    assert s["held"], s["metrics"]
    m = s["metrics"]
    assert m["sft_ends_turn"] >= 0.8 and m["base_ends_turn"] <= 0.1
    assert m["sft_on_task"] > m["base_on_task"] + 0.3
    assert m["sft_answer_nll"] < m["base_answer_nll"]           # the answers became likely
    for stage in ("", "base", "full_seq"):                     # what `deepatlas chat --run` loads
        chat = run_chat_model(f"{s['dir']}/{stage}" if stage else s["dir"])
        assert chat.prompt_ids([{"role": "user", "content": "Count the words: and it was"}])
