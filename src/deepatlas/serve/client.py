"""A chat session with a running `deepatlas serve` (or any OpenAI-compatible server), stdlib only.

`deepatlas chat --server http://127.0.0.1:8000/v1` uses it in place of the local ChatSession:
the same reply/reset interface, the conversation kept here, the answer streamed as server-sent
events from POST /v1/chat/completions.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Iterator


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


@dataclass
class RemoteSession:
    url: str
    model: str | None = None            # None: the server's first model
    api_key: str | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    timeout: float = 300.0
    messages: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.url = _base(self.url)
        if self.model is None:
            data = self._request("GET", "/models")["data"]
            if not data:
                raise ValueError(f"{self.url} serves no models")
            self.model = data[0]["id"]

    def _headers(self) -> dict[str, str]:
        h = {"content-type": "application/json"}
        if self.api_key:
            h["authorization"] = f"Bearer {self.api_key}"
        return h

    def _open(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers())
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            try:
                message = json.loads(err.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = str(err)
            raise ValueError(f"server said {err.code}: {message}") from None
        except urllib.error.URLError as err:
            raise ValueError(f"cannot reach {self.url}: {err.reason}") from None

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        with self._open(method, path, body) as r:
            return json.loads(r.read())

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Text pieces of the server's answer to `messages`."""
        body = {"model": self.model, "messages": messages, "max_tokens": self.max_new_tokens,
                "temperature": self.temperature, "stream": True}
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if self.seed is not None:
            body["seed"] = self.seed
        with self._open("POST", "/chat/completions", body) as r:
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    return
                for choice in json.loads(line[6:]).get("choices", []):
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        yield piece

    def reset(self) -> None:
        self.messages = []

    def reply(self, user_text: str, on_text: Callable[[str], None],
              notify: Callable[[str], None] = print) -> str:
        """ChatSession.reply over HTTP: add the turn, stream the answer, keep it in the history."""
        self.messages.append({"role": "user", "content": user_text})
        pieces: list[str] = []
        try:
            for piece in self.stream(self.messages):
                pieces.append(piece)
                on_text(piece)
        finally:
            self.messages.append({"role": "assistant", "content": "".join(pieces)})
        return "".join(pieces)
