"""A chat session: a GGUF model, its tokenizer and template, the conversation, streamed answers.

Each turn renders the whole conversation with the ChatML template, encodes it, and streams the
answer through deepatlas.generation (greedy or sampled) until <|im_end|> or the token budget.
When the conversation no longer fits the context window, the oldest turns are dropped; a single
message that is too long by itself is cut to fit, and the caller is told.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from deepatlas.chat.template import IM_END, default_system_prompt, is_chatml, render_chatml
from deepatlas.chat.tokenizer import GGUFTokenizer, tokenizer_from_gguf
from deepatlas.generation.decode import SamplingSettings, stream
from deepatlas.models.llama import Llama, from_gguf
from deepatlas.quant.weights import INSTALL_HINT, smollm2_path

MODELS = ("smollm2",)


def find_gguf(model: str = "smollm2", gguf: str | None = None) -> Path:
    """The GGUF file: `gguf` if given, else the installed package of `model`."""
    if gguf is not None:
        path = Path(gguf)
        if not path.is_file():
            raise FileNotFoundError(f"--gguf {gguf}: no such file")
        return path
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(MODELS)}, or pass --gguf PATH")
    path = smollm2_path()
    if path is None:
        raise FileNotFoundError(f"SmolLM2-135M-Instruct GGUF not found: {INSTALL_HINT}, or pass --gguf PATH")
    return path


@dataclass
class ChatModel:
    model: Llama
    tokenizer: GGUFTokenizer
    chat_template: str | None
    stop_ids: list[int]

    @classmethod
    def load(cls, path: str | Path, weights: str = "fp32") -> ChatModel:
        model = from_gguf(path, keep_quantized=weights in ("gguf", "int4"))  # int4 reuses the Q4 codes
        if weights not in ("fp32", "gguf"):
            from deepatlas.quant.linear import compact_model

            compact_model(model, weights)
        meta = model.gguf_metadata
        tok = tokenizer_from_gguf(meta)
        template = meta.get("tokenizer.chat_template")
        stops = {tok.eos_id} if tok.eos_id is not None else set()
        if IM_END in tok.bpe.vocab:
            stops.add(tok.token_id(IM_END))
        return cls(model, tok, template, sorted(stops))

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        if not is_chatml(self.chat_template):
            raise ValueError("this GGUF has no ChatML chat template; use `deepatlas generate --raw`")
        return self.tokenizer.encode(render_chatml(messages, True, default_system_prompt(self.chat_template)))

    def stream_text(self, ids: list[int], max_new_tokens: int, settings: SamplingSettings,
                    seed: int | None = None) -> Iterator[str]:
        """Yield pieces of the answer's text as tokens arrive (whole characters only)."""
        new: list[int] = []
        shown = ""
        with torch.inference_mode():
            for token in stream(self.model, ids, max_new_tokens, settings, stop_ids=self.stop_ids, seed=seed):
                if token in self.stop_ids:
                    break
                new.append(token)
                text = self.tokenizer.decode(new)
                if text.endswith("\ufffd"):  # a multi-byte character is still incomplete
                    continue
                yield text[len(shown):]
                shown = text


@dataclass
class ChatSession:
    chat: ChatModel
    context: int = 2048                 # tokens of conversation + answer we keep
    max_new_tokens: int = 256
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    seed: int | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.context - self.max_new_tokens < 16 or self.context > self.chat.model.context_length:
            raise ValueError(f"context {self.context} must leave ≥ 16 prompt tokens after max_new_tokens "
                             f"{self.max_new_tokens} and be ≤ the model's {self.chat.model.context_length}")

    def reset(self) -> None:
        self.messages = []

    def _fit(self, notify: Callable[[str], None]) -> list[int]:
        """Prompt ids of the conversation, dropping old turns / cutting the last message to fit."""
        budget = self.context - self.max_new_tokens
        ids = self.chat.prompt_ids(self.messages)
        dropped = 0
        while len(ids) > budget and len(self.messages) > 1:
            self.messages.pop(0)
            dropped += 1
            ids = self.chat.prompt_ids(self.messages)
        if dropped:
            notify(f"[dropped the {dropped} oldest message(s) to fit the {self.context}-token context]")
        if len(ids) > budget:  # the last message alone is too long: keep its beginning
            last = self.messages[-1]
            content_ids = self.chat.tokenizer.encode(last["content"])
            keep = max(0, len(content_ids) - (len(ids) - budget))
            last["content"] = self.chat.tokenizer.decode(content_ids[:keep])
            notify(f"[message truncated from {len(content_ids)} to {keep} tokens to fit the "
                   f"{self.context}-token context]")
            ids = self.chat.prompt_ids(self.messages)
            while len(ids) > budget and keep > 0:  # re-tokenising at the cut may add a token or two
                keep -= 1
                last["content"] = self.chat.tokenizer.decode(content_ids[:keep])
                ids = self.chat.prompt_ids(self.messages)
        return ids

    def reply(self, user_text: str, on_text: Callable[[str], None],
              notify: Callable[[str], None] = print) -> str:
        """Add the user's turn, stream the answer through on_text, and keep it in the history.

        A KeyboardInterrupt while answering keeps the partial answer and re-raises."""
        self.messages.append({"role": "user", "content": user_text})
        ids = self._fit(notify)
        pieces: list[str] = []
        try:
            for piece in self.chat.stream_text(ids, self.max_new_tokens, self.settings, self.seed):
                pieces.append(piece)
                on_text(piece)
        finally:
            self.messages.append({"role": "assistant", "content": "".join(pieces)})
        return "".join(pieces)
