"""The official `openai` client against `deepatlas serve` (tiny-random model) on 127.0.0.1."""
from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import pytest
import torch

openai = pytest.importorskip("openai")

MODEL = "tiny-random"
HI = [{"role": "user", "content": "Say hi."}]


def client(srv, **kw):
    return openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0, timeout=30, **kw)


def test_models_and_chat(server):
    c = client(server)
    ids = [m.id for m in c.models.list().data]
    assert MODEL in ids and "all-MiniLM-L6-v2" in ids
    r = c.chat.completions.create(model=MODEL, messages=HI, max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("length", "stop")
    u = r.usage
    assert u.prompt_tokens == len(server.engine.encode_chat(HI)) and u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert 1 <= u.completion_tokens <= 6


def test_stream_equals_non_stream_for_a_seed(server):
    c = client(server)
    kw = dict(model=MODEL, messages=HI, max_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    full = c.chat.completions.create(**kw)
    chunks = list(c.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == full.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == full.choices[0].finish_reason
    other = c.chat.completions.create(**{**kw, "seed": 8})
    again = c.chat.completions.create(**kw)
    assert again.choices[0].message.content == full.choices[0].message.content
    assert other.choices[0].message.content != full.choices[0].message.content or full.usage.completion_tokens < 3


def test_completions_n_and_stop(server):
    c = client(server)
    r = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10, n=3, temperature=1.0, seed=1)
    assert [ch.index for ch in r.choices] == [0, 1, 2]
    texts = [ch.text for ch in r.choices]
    assert len(set(texts)) > 1, texts                            # seeds seed+i differ
    assert r.usage.prompt_tokens == len(server.engine.encode("Once upon a time"))
    greedy = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10, temperature=0).choices[0]
    text = greedy.text
    stop = text[3:5] if len(text) >= 5 else None
    if stop and stop.strip():
        cut = c.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10, temperature=0,
                                   stop=[stop]).choices[0]
        assert cut.text == text[:text.find(stop)] and cut.finish_reason == "stop"
        streamed = "".join(ch.choices[0].text for ch in c.completions.create(
            model=MODEL, prompt="Once upon a time", max_tokens=10, temperature=0, stop=[stop], stream=True))
        assert streamed == cut.text


def test_embeddings_match_the_encoder(server):
    from deepatlas.models.sentence_encoder import load_minilm

    c = client(server)
    texts = ["a cat sat on the mat", "stock prices fell"]
    r = c.embeddings.create(model="all-MiniLM-L6-v2", input=texts)   # the client asks for base64
    got = np.array([d.embedding for d in r.data])
    want = load_minilm().encode(texts).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    f = c.embeddings.create(model="all-MiniLM-L6-v2", input="a cat", encoding_format="float")
    assert len(f.data[0].embedding) == 384 and r.usage.prompt_tokens > 0


def test_64_concurrent_streams_complete_and_match_sequential(server):
    prompts = [f"Count {i}:" for i in range(64)]

    async def one(ac, p):
        t0 = time.perf_counter()
        s = await ac.completions.create(model=MODEL, prompt=p, max_tokens=8, temperature=0, stream=True)
        text, finish = "", None
        async for ch in s:
            text += ch.choices[0].text
            finish = ch.choices[0].finish_reason or finish
        return text, finish, time.perf_counter() - t0

    async def load():
        async with openai.AsyncOpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=60) as ac:
            return await asyncio.gather(*(one(ac, p) for p in prompts))

    t0 = time.perf_counter()
    results = asyncio.run(load())
    wall = time.perf_counter() - t0
    assert all(f in ("length", "stop") for _, f, _ in results)
    assert max(server.engine.batcher.batch_sizes) > 8            # they shared the batch
    c = client(server)
    for p, (text, _, _) in list(zip(prompts, results))[:8]:      # each equals the request served alone
        assert c.completions.create(model=MODEL, prompt=p, max_tokens=8, temperature=0).choices[0].text == text
    assert wall < 30
