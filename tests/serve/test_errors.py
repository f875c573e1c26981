"""Bad requests get OpenAI-shaped errors; keys, body limits, disconnects."""
from __future__ import annotations

import time

from tests.serve.conftest import http, make_server, stream_lines

MODEL = "tiny-random"


def post(srv, path, body=None, content=None, headers=None):
    if content is not None:
        headers = {"content-type": "application/json", **(headers or {})}
    return http(srv.url, "POST", path, body=body, content=content, headers=headers)


def assert_error(r, status, code=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code:
        assert err["code"] == code


def test_bad_requests(server):
    msgs = [{"role": "user", "content": "hi"}]
    assert_error(post(server, "/chat/completions", content=b'{"model": "tiny-random", "messages": [',
                      headers={"content-type": "application/json"}), 400, "invalid_json")
    assert_error(post(server, "/chat/completions", {"model": MODEL}), 422)                 # messages missing
    assert_error(post(server, "/chat/completions", {"model": MODEL, "messages": msgs, "max_tokens": "many"}), 422)
    assert_error(post(server, "/chat/completions", {"model": MODEL, "messages": msgs, "temperature": 9}), 422)
    assert_error(post(server, "/chat/completions", {"model": "gpt-9", "messages": msgs}), 404, "model_not_found")
    assert_error(post(server, "/chat/completions", {"model": MODEL, "messages": msgs, "max_tokens": 10_000}),
                 400, "context_length_exceeded")
    assert_error(post(server, "/completions", {"model": MODEL, "prompt": "x" * (1 << 20)}), 413)
    assert_error(post(server, "/embeddings", {"model": MODEL, "input": "x"}), 404, "model_not_found")
    assert_error(http(server.url, "GET", "/nothing-here"), 404)
    ok = post(server, "/chat/completions", {"model": MODEL, "messages": msgs, "max_tokens": 2})
    assert ok.status_code == 200


def test_api_key():
    _, srv = make_server(api_key="sesame", slots=2)
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2}
    with srv:
        assert_error(post(srv, "/completions", body), 401, "invalid_api_key")
        assert_error(post(srv, "/completions", body, headers={"Authorization": "Bearer wrong"}), 401)
        assert_error(http(srv.url, "GET", "/models"), 401)
        assert post(srv, "/completions", body, headers={"Authorization": "Bearer sesame"}).status_code == 200


def test_chunked_body_over_the_limit(server):
    chunks = (b"x" * 65536 for _ in range(20))                  # 1.25 MiB, no content-length
    assert_error(post(server, "/completions", content=chunks), 413, "request_too_large")


def test_client_disconnect_frees_the_slot():
    engine, srv = make_server(slots=1, slot_len=2048)
    batcher = engine.batcher
    body = {"model": MODEL, "prompt": "Go on and on", "max_tokens": 2000, "temperature": 0, "stream": True}
    with srv:
        lines = stream_lines(srv.url, "/completions", body)
        got = [next(lines) for _ in range(3)]                    # a few events, then hang up
        assert all(line.startswith("data: {") for line in got)
        lines.close()
        deadline = time.monotonic() + 10
        while batcher.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not batcher.active, "the disconnected stream still holds its slot"
        assert batcher.finished.get("cancelled") == 1, batcher.finished
        # the only slot is free again: two more requests complete one after the other
        for prompt in ("next", "and next"):
            r = post(srv, "/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 3})
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
