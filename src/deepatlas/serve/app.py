"""An OpenAI-compatible HTTP API (map place S4) on FastAPI / Starlette, served by uvicorn.

    GET  /v1/models                 the chat model and the embedding model
    POST /v1/chat/completions       ChatML prompt from `messages`; stream=true -> server-sent events
    POST /v1/completions            raw text continuation of `prompt`
    POST /v1/embeddings             all-MiniLM-L6-v2 sentence embeddings (float or base64)

Why FastAPI on uvicorn: an ASGI server streams each token as an SSE event without a thread per
connection, notices a client that went away (http.disconnect: the request is cancelled and its
batch slot freed), and on SIGTERM stops accepting, lets in-flight responses finish, then runs
the shutdown hook — the three behaviours serving needs. The decoding itself runs in one batcher
thread (generation/batching.py) that every request shares.

Errors have OpenAI's shape, {"error": {"message", "type", "param", "code"}}:
    400 malformed JSON, a prompt + max_tokens beyond the context, a bad stop list
    401 a missing or wrong key when the server has --api-key
    404 an unknown model or route;  413 a body over 1 MiB;  422 wrong types / missing fields
"""
from __future__ import annotations

import asyncio
import base64
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deepatlas.serve.engine import Engine
from deepatlas.serve.schemas import ChatRequest, CompletionRequest, EmbeddingRequest

MAX_BODY = 1 << 20                       # 1 MiB
EMBEDDING_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MAX_TOKENS = 512


class APIError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class Guard:
    """ASGI middleware: the API key (401) and the body size limit (413) before any route runs."""

    def __init__(self, app: Any, api_key: str | None, max_body: int = MAX_BODY):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key is not None:
            auth = headers.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                what = "no API key given" if not auth else "incorrect API key"
                return await _send_json(send, 401, error_body(
                    f"{what}: send the server's --api-key as 'Authorization: Bearer KEY'", code="invalid_api_key"))
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await _send_json(send, 413, _too_large(int(length), self.max_body))
        seen, too_large = 0, False

        async def counted() -> dict:  # a chunked body has no content-length: count as it arrives
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    too_large = True
                    raise _BodyTooLarge(seen)
            return message

        async def guarded_send(message: dict) -> None:  # the app's reply to the failed read -> 413
            if not too_large:
                return await send(message)
            if message["type"] == "http.response.start":
                await _send_json(send, 413, _too_large(seen, self.max_body))

        await self.app(scope, counted, guarded_send)


class _BodyTooLarge(Exception):
    pass


def _too_large(n: int, limit: int) -> dict:
    return error_body(f"request body of {n} bytes exceeds the limit of {limit} bytes", code="request_too_large")


async def _send_json(send: Callable, status: int, body: dict) -> None:
    import json

    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def _sse(obj: dict | str) -> str:
    import json

    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n"


async def _merge(gens: list[AsyncIterator]) -> AsyncIterator[tuple[int, Any]]:
    """(index, item) from several async generators as they come; cancels them all on exit."""
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(i: int, gen: AsyncIterator) -> None:
        try:
            async for item in gen:
                await queue.put((i, item))
            await queue.put((i, done))
        except Exception as err:  # handed to the consumer
            await queue.put((i, err))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(gens)]
    left = len(tasks)
    try:
        while left:
            i, item = await queue.get()
            if item is done:
                left -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        for g in gens:
            await g.aclose()


def create_app(engine: Engine, api_key: str | None = None, max_body: int = MAX_BODY,
               embedder: Callable[[], Any] | None = None) -> Any:
    """The ASGI app. `embedder()` returns the sentence encoder (loaded on the first embeddings call)."""
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        yield
        engine.stop()   # uvicorn has let the in-flight responses finish by now

    app = FastAPI(title="deepatlas", lifespan=lifespan)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return JSONResponse(error_body(err.message, err.type, err.param, err.code), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = err.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(error_body("malformed JSON in the request body", code="invalid_json"), 400)
        e = errors[0]
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        return JSONResponse(error_body(f"{where or 'body'}: {e.get('msg')}", param=where or None,
                                       code="invalid_value"), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {err.detail}",
                                       code="not_found" if err.status_code == 404 else None), err.status_code)

    def model_card(name: str) -> dict:
        return {"id": name, "object": "model", "created": 0, "owned_by": "deepatlas"}

    def models() -> list[str]:
        return [engine.name] + ([EMBEDDING_MODEL] if embedder is not None else [])

    def check_model(name: str, valid: list[str]) -> None:
        if name not in valid:
            raise APIError(404, f"model {name!r} does not exist; this server has: {', '.join(valid)}",
                           param="model", code="model_not_found")

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [model_card(m) for m in models()]}

    @app.get("/v1/models/{name}")
    async def get_model(name: str) -> dict:
        check_model(name, models())
        return model_card(name)

    def plan(body: Any, prompt: list[int], max_tokens: int | None) -> tuple[int, list[str]]:
        """max_tokens (default: up to DEFAULT_MAX_TOKENS that fit) and stops; APIError 400 if they don't fit."""
        room = engine.context - len(prompt)
        if room < 1:
            raise APIError(400, f"the prompt has {len(prompt)} tokens; the context is {engine.context}",
                           param="messages", code="context_length_exceeded")
        max_tokens = max_tokens if max_tokens is not None else min(DEFAULT_MAX_TOKENS, room)
        try:
            engine.check(prompt, max_tokens)
            return max_tokens, body.stops()
        except ValueError as err:
            raise APIError(400, str(err), param="max_tokens" if "max_tokens" in str(err) else "stop",
                           code="context_length_exceeded" if "context" in str(err) else "invalid_value")

    def streams(body: Any, prompt: list[int], max_tokens: int, stops: list[str]) -> list[AsyncIterator]:
        top_p = None if body.top_p >= 1.0 else body.top_p
        return [engine.stream(prompt, max_tokens, body.temperature, top_p,
                              None if body.seed is None else body.seed + i, stops) for i in range(body.n)]

    async def run(request: Request, body: Any, prompts: list[list[int]], max_tokens: int, stops: list[str],
                  shape: Callable[[int, str | None, str | None], dict], final: Callable[..., dict]):
        """Stream (SSE) or collect the body.n choices of every prompt."""
        gens = [g for p in prompts for g in streams(body, p, max_tokens, stops)]
        usage_p = sum(len(p) for p in prompts)
        if body.stream:
            include_usage = bool((getattr(body, "stream_options", None) or {}).get("include_usage"))

            async def events() -> AsyncIterator[str]:
                completion = 0
                started = set()
                async for i, (piece, choice) in _merge(gens):
                    if i not in started:
                        started.add(i)
                        yield _sse(shape(i, None, None, first=True))
                    if choice is None:
                        yield _sse(shape(i, piece, None))
                    else:
                        completion += choice.tokens
                        yield _sse(shape(i, None, choice.finish_reason))
                if include_usage:
                    yield _sse(final([], usage_p, completion, chunk=True))
                yield _sse("[DONE]")

            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})

        async def collect() -> tuple[list[str], list[Any]]:
            texts, ends = [""] * len(gens), [None] * len(gens)
            async for i, (piece, choice) in _merge(gens):
                if choice is None:
                    texts[i] += piece
                else:
                    ends[i] = choice
            return texts, ends

        task = asyncio.create_task(collect())
        while not task.done():  # a client that hangs up cancels its requests (their slots free up)
            await asyncio.wait([task], timeout=0.25)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                raise APIError(499, "client disconnected")
        texts, ends = task.result()
        choices = [(i, t, e.finish_reason) for i, (t, e) in enumerate(zip(texts, ends))]
        return final(choices, usage_p, sum(e.tokens for e in ends))

    def ident(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:24]}"

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        check_model(body.model, [engine.name])
        try:
            prompt = engine.encode_chat([m.as_chatml() for m in body.messages])
        except ValueError as err:
            raise APIError(400, str(err), param="messages")
        max_tokens, stops = plan(body, prompt, body.max_completion_tokens or body.max_tokens)
        cid, created = ident("chatcmpl"), int(time.time())
        head = {"id": cid, "created": created, "model": engine.name, "system_fingerprint": "deepatlas"}

        def shape(i: int, piece: str | None, finish: str | None, first: bool = False) -> dict:
            delta = {"role": "assistant", "content": ""} if first else ({} if piece is None else {"content": piece})
            return {**head, "object": "chat.completion.chunk",
                    "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        def final(choices: list, prompt_tokens: int, completion: int, chunk: bool = False) -> dict:
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                     "total_tokens": prompt_tokens + completion}
            if chunk:
                return {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            return {**head, "object": "chat.completion", "usage": usage,
                    "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                                 "logprobs": None, "finish_reason": finish} for i, text, finish in choices]}

        return await run(request, body, [prompt], max_tokens, stops, shape, final)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        check_model(body.model, [engine.name])
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not texts or any(not t for t in texts):
            raise APIError(400, "prompt must be a non-empty string or a list of non-empty strings", param="prompt")
        prompts = [engine.encode(t) for t in texts]
        max_tokens, stops = plan(body, max(prompts, key=len), body.max_tokens or 16)  # OpenAI's default 16
        cid, created = ident("cmpl"), int(time.time())
        head = {"id": cid, "created": created, "model": engine.name, "object": "text_completion"}
        echo = {i * body.n + j: texts[i] for i in range(len(texts)) for j in range(body.n)} if body.echo else {}

        def shape(i: int, piece: str | None, finish: str | None, first: bool = False) -> dict:
            text = echo.get(i, "") if first else (piece or "")
            return {**head, "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish}]}

        def final(choices: list, prompt_tokens: int, completion: int, chunk: bool = False) -> dict:
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                     "total_tokens": prompt_tokens + completion}
            return {**head, "usage": usage,
                    "choices": [{"index": i, "text": echo.get(i, "") + text, "logprobs": None,
                                 "finish_reason": finish} for i, text, finish in choices]}

        return await run(request, body, prompts, max_tokens, stops, shape, final)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> dict:
        check_model(body.model, [EMBEDDING_MODEL] if embedder is not None else [])
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or any(not isinstance(t, str) or not t for t in texts):
            raise APIError(400, "input must be a non-empty string or a list of non-empty strings", param="input")
        if len(texts) > 2048:
            raise APIError(400, f"input holds {len(texts)} texts; at most 2048", param="input")

        def encode() -> tuple[np.ndarray, int]:
            if "encoder" not in state:
                state["encoder"] = embedder()
            enc = state["encoder"]
            tokens = sum(len(enc.token_ids(t)) for t in texts)
            return enc.encode(texts).float().numpy(), tokens

        vectors, tokens = await asyncio.get_running_loop().run_in_executor(None, encode)
        data = []
        for i, v in enumerate(vectors):
            emb: Any = (base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64"
                        else v.tolist())
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {"object": "list", "data": data, "model": EMBEDDING_MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return Guard(app, api_key, max_body)
