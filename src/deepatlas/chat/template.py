"""ChatML, the chat format of SmolLM2-Instruct (and Qwen, ...), rendered without a template engine.

A conversation is a list of {"role": "system" | "user" | "assistant", "content": str} turns; each
turn becomes
    <|im_start|>{role}\n{content}<|im_end|>\n
and the prompt for the model's answer ends with "<|im_start|>assistant\n" (add_generation_prompt).
SmolLM2's template (GGUF `tokenizer.chat_template`, a Jinja program) also puts a default system
turn first when the conversation has none; we read that default from the template text.
tests/chat/test_template.py checks our rendering against jinja2 running the template itself.
"""
from __future__ import annotations

import re

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ROLES = ("system", "user", "assistant")
# the literal system turn inside the template: '<|im_start|>system\n' ... '<|im_end|>'
_DEFAULT_SYSTEM = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>", re.S)


def default_system_prompt(chat_template: str | None) -> str | None:
    """The system message a ChatML template inserts when none is given (None if it inserts none)."""
    if not chat_template:
        return None
    m = _DEFAULT_SYSTEM.search(chat_template)
    return m.group(1).replace("\\n", "\n") if m else None


def is_chatml(chat_template: str | None) -> bool:
    return bool(chat_template) and IM_START in chat_template and IM_END in chat_template


def render_chatml(messages: list[dict[str, str]], add_generation_prompt: bool = True,
                  default_system: str | None = None) -> str:
    """The ChatML text of `messages`; `default_system` goes first if the first turn is not system."""
    for i, m in enumerate(messages):
        if m.get("role") not in ROLES:
            raise ValueError(f"message {i} has role {m.get('role')!r}; valid: {', '.join(ROLES)}")
    parts = []
    if default_system is not None and messages and messages[0]["role"] != "system":
        parts.append(f"{IM_START}system\n{default_system}{IM_END}\n")
    parts += [f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages]
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts)
