"""The model behind the server: a chat model, its continuous batcher thread, text streaming.

Every HTTP request becomes one batching.Request per choice (n); the batcher thread runs the
decode steps (generation/batching.py) and hands tokens back to the asyncio loop through
call_soon_threadsafe. Text is streamed as whole characters (a multi-byte character split over
tokens waits for its last byte) and cut at the first stop string; while a stop string could
still be completing, the characters that might belong to it are held back.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import AsyncIterator, Sequence

import torch

from deepatlas.chat.session import ChatModel, find_gguf
from deepatlas.generation.batching import ContinuousBatcher, Request
from deepatlas.generation.fast_decode import FastLlama

# a 2-layer random-weight LLaMA with SmolLM2's tokenizer (its own output head, so its tokens vary):
# for tests and load runs
TINY = "tiny-random"
WEIGHTS = ("fp32", "bf16", "int8", "int4")


def load_chat_model(model: str = "smollm2", weights: str = "int4", gguf: str | None = None) -> ChatModel:
    """The chat model to serve; TINY keeps SmolLM2's tokenizer and template with random tiny weights."""
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; valid: {', '.join(WEIGHTS)}")
    if model != TINY:
        return ChatModel.load(find_gguf(model, gguf), weights)
    from deepatlas.chat.template import IM_END
    from deepatlas.chat.tokenizer import tokenizer_from_gguf
    from deepatlas.models.llama import Llama, LlamaConfig
    from deepatlas.quant.gguf import read_gguf

    meta = read_gguf(find_gguf("smollm2", gguf)).metadata
    tok = tokenizer_from_gguf(meta)
    torch.manual_seed(0)
    net = Llama(LlamaConfig(vocab_size=len(tok), dim=64, n_layer=2, n_head=4, n_kv_head=2, ffn_dim=128,
                            context_length=2048, tie_embeddings=False)).eval()
    if weights != "fp32":
        from deepatlas.quant.linear import compact_model

        compact_model(net, weights)
    stops = sorted({tok.eos_id, tok.token_id(IM_END)} - {None})
    return ChatModel(net, tok, meta.get("tokenizer.chat_template"), stops)


@dataclass
class Choice:
    """How one choice ended: the tokens it generated and why ("stop" or "length"); its text
    came before as pieces."""

    text: str
    tokens: int
    finish_reason: str


class TextStream:
    """Token ids -> text pieces: whole characters, cut at the first stop string."""

    def __init__(self, decode, stop_ids: Sequence[int], stops: Sequence[str]):
        self.decode, self.stop_ids, self.stops = decode, set(stop_ids), [s for s in stops if s]
        self.ids: list[int] = []
        self.shown = 0
        self.hit_stop = False

    def push(self, token: int) -> str:
        """The new text this token makes safe to show ('' if none)."""
        if token not in self.stop_ids:
            self.ids.append(token)
        text = self.decode(self.ids)
        for s in self.stops:
            at = text.find(s)
            if at >= 0:
                self.hit_stop, text = True, text[:at]
        if text.endswith("\ufffd") and not self.hit_stop:
            return ""
        safe = len(text) if self.hit_stop else len(text) - max((len(s) - 1 for s in self.stops), default=0)
        return self._take(text, safe)

    def flush(self) -> str:
        """Everything not yet shown (at the end)."""
        text = self.decode(self.ids)
        for s in self.stops:
            at = text.find(s)
            if at >= 0:
                text = text[:at]
        return self._take(text, len(text))

    def _take(self, text: str, upto: int) -> str:
        piece = text[self.shown:max(upto, self.shown)]
        self.shown += len(piece)
        return piece


class Engine:
    """One chat model, its batcher and the thread that runs it."""

    def __init__(self, chat: ChatModel, name: str, slots: int = 16, slot_len: int = 1024, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.chat, self.name = chat, name
        self.fast = FastLlama(chat.model, n_slots=slots, max_len=min(slot_len, chat.model.context_length))
        self.batcher = ContinuousBatcher(self.fast)
        self.thread: threading.Thread | None = None

    @property
    def context(self) -> int:
        return self.batcher.context

    def start(self) -> None:
        self.thread = threading.Thread(target=self.batcher.serve_forever, name="deepatlas-batcher", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.batcher.close()
        if self.thread is not None:
            self.thread.join(timeout)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.chat.prompt_ids(messages)

    def encode(self, text: str) -> list[int]:
        return self.chat.tokenizer.encode(text)

    def check(self, prompt: Sequence[int], max_tokens: int) -> None:
        """ValueError (-> HTTP 400) when the request cannot fit."""
        Request(list(prompt), max_tokens).check(self.context)

    async def stream(self, prompt: Sequence[int], max_tokens: int, temperature: float, top_p: float | None,
                     seed: int | None, stops: Sequence[str]) -> AsyncIterator[tuple[str, Choice | None]]:
        """Yield (piece, None) as text arrives, then ("", Choice) once. Cancelling the consumer
        (a client that went away) cancels the request and frees its slot."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        put = lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)  # noqa: E731
        req = Request(list(prompt), max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                      stop_ids=self.chat.stop_ids, on_token=lambda t: put(("token", t)),
                      on_done=lambda reason: put(("done", reason)))
        text = TextStream(lambda ids: self.chat.tokenizer.decode(ids), self.chat.stop_ids, stops)
        self.batcher.submit(req)
        finished = False
        try:
            while True:
                kind, value = await queue.get()
                if kind == "token":
                    piece = text.push(value)
                    if piece:
                        yield piece, None
                    if text.hit_stop:
                        self.batcher.cancel(req)
                        finished = True
                        rest = text.flush()
                        if rest:
                            yield rest, None
                        yield "", Choice("", len(req.tokens), "stop")
                        return
                    continue
                finished = True
                if value.startswith("error"):
                    raise RuntimeError(value)
                rest = text.flush()
                if rest:
                    yield rest, None
                yield "", Choice("", len(req.tokens), "length" if value == "length" else "stop")
                return
        finally:
            if not finished:
                self.batcher.cancel(req)
