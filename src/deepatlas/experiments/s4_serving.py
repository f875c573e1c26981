"""S4 — serving: the OpenAI-compatible server holds a concurrent load and batches it.

Built: serve/ (FastAPI on uvicorn, /v1/chat/completions with SSE streaming, the continuous
batcher of generation/batching.py behind it). The experiment starts the server on 127.0.0.1 in
this process with SmolLM2-135M, then drives it over HTTP with streaming chat requests:
    sequential   one request at a time (`requests_seq` of them)
    concurrent   `requests` requests, `concurrency` in flight at once (a thread each)
and records, from the arrival time of every server-sent event,
    TTFT         time to first token: request sent -> first content event
    per-token    the gap between consecutive content events of one stream
    throughput   completion tokens (the server's usage counts) / wall time of the phase
A malformed request sent during the load must get its 400 while the others stream on.
"""
from __future__ import annotations

import http.client
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run

TOPICS = ["the moon", "the sea", "a cat", "autumn", "a city at night", "mountains", "rain", "a library",
          "trains", "coffee", "the stars", "a garden", "snow", "the desert", "a river", "birds"]


@dataclass
class Config:
    weights: str = "fp32"      # rows of a batch share one read of fp32 weights; the int4 kernel's
                               # cost grows with the rows (S3), so int4 is for single streams
    requests: int = 32
    concurrency: int = 16
    requests_seq: int = 8
    max_tokens: int = 32
    threads: int = 2


def _stream(url: str, body: dict) -> dict:
    """One streamed chat request -> its text, event times and the server's usage."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"content-type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"status {r.status}: {r.read()[:200]!r}")
    times, text, usage, finish = [], "", None, None
    while True:
        line = r.readline()
        if not line:
            break
        line = line.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        usage = event.get("usage") or usage
        for c in event.get("choices", []):
            if c["delta"].get("content"):
                times.append(time.perf_counter() - t0)
                text += c["delta"]["content"]
            finish = c.get("finish_reason") or finish
    conn.close()
    return {"times": times, "text": text, "usage": usage, "finish": finish, "end": time.perf_counter() - t0}


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def _phase(url: str, bodies: list[dict], workers: int) -> tuple[list[dict], float]:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        out = list(pool.map(lambda b: _stream(url, b), bodies))
    return out, time.perf_counter() - t0


@experiment("S4", "s4-serving",
            claim="the OpenAI-compatible server completes every request of a concurrent streaming load, "
                  "batches it continuously for more tokens/s than serving the same requests one at a time, "
                  "and answers a bad request with a 400 meanwhile",
            config=Config, one_thread=False,
            quick={"requests": 8, "concurrency": 8, "requests_seq": 2, "max_tokens": 16, "threads": 1},
            headline={"throughput_gain": ("concurrent / sequential tokens/s", "{:.2f}×"),
                      "ttft_p50_s": ("TTFT p50", "{:.2f} s"), "per_token_p50_ms": ("per-token p50", "{:.0f} ms"),
                      "completed": ("requests completed", "{}")})
def s4_serving(cfg: Config, run: Run) -> Verdict:
    from deepatlas.serve.app import create_app
    from deepatlas.serve.engine import Engine, load_chat_model
    from deepatlas.serve.local import LocalServer

    if cfg.requests < 1 or cfg.concurrency < 1 or cfg.requests_seq < 1 or cfg.max_tokens < 2:
        raise ValueError(f"requests {cfg.requests}, concurrency {cfg.concurrency}, requests_seq {cfg.requests_seq} "
                         f"must be ≥ 1 and max_tokens {cfg.max_tokens} ≥ 2")
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    engine = Engine(load_chat_model("smollm2", cfg.weights), "smollm2", slots=cfg.concurrency, slot_len=512)
    run.print(f"loaded SmolLM2 ({cfg.weights}) in {time.perf_counter() - t0:.1f} s")

    def body(i: int) -> dict:
        return {"model": "smollm2", "stream": True, "max_tokens": cfg.max_tokens, "temperature": 0,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": f"Write two lines about {TOPICS[i % len(TOPICS)]}."}]}

    with LocalServer(create_app(engine)) as srv:
        _stream(srv.url, body(0))                                       # warm-up
        seq, seq_wall = _phase(srv.url, [body(i) for i in range(cfg.requests_seq)], 1)
        engine.batcher.batch_sizes.clear()
        bad: dict = {}

        def bad_request() -> None:
            time.sleep(0.2)
            host, port = srv.url.split("//")[1].split("/")[0].split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request("POST", "/v1/chat/completions", body=b"{not json", headers={"content-type": "application/json"})
            r = conn.getresponse()
            bad.update(status=r.status, body=json.loads(r.read()))

        with ThreadPoolExecutor(max_workers=1) as side:
            probe = side.submit(bad_request)
            conc, conc_wall = _phase(srv.url, [body(i) for i in range(cfg.requests)], cfg.concurrency)
            probe.result()
        batch_sizes = list(engine.batcher.batch_sizes)

    def tokens(results: list[dict]) -> int:
        return sum(r["usage"]["completion_tokens"] for r in results if r["usage"])

    m: dict[str, float] = {}
    m["sequential_tokens_per_s"] = tokens(seq) / seq_wall
    m["concurrent_tokens_per_s"] = tokens(conc) / conc_wall
    m["throughput_gain"] = m["concurrent_tokens_per_s"] / m["sequential_tokens_per_s"]
    m["completed"] = sum(r["finish"] in ("stop", "length") and r["usage"] is not None for r in conc)
    m["requests"] = cfg.requests
    m["mean_batch"] = statistics.mean(batch_sizes) if batch_sizes else 0.0
    m["max_batch"] = max(batch_sizes, default=0)
    for name, results in (("seq", seq), ("conc", conc)):
        ttft = [r["times"][0] for r in results if r["times"]]
        gaps = [b - a for r in results for a, b in zip(r["times"], r["times"][1:])]
        for q in (0.5, 0.9, 0.99):
            m[f"{name}_ttft_p{int(q * 100)}_s"] = _pct(ttft, q)
            m[f"{name}_per_token_p{int(q * 100)}_ms"] = 1000 * _pct(gaps, q)
    m["ttft_p50_s"], m["per_token_p50_ms"] = m["conc_ttft_p50_s"], m["conc_per_token_p50_ms"]
    same = {i: conc[i]["text"] == seq[i]["text"] for i in range(min(len(seq), len(conc)))}
    m["greedy_text_equal_to_sequential"] = sum(same.values()) / max(len(same), 1)
    m["bad_request_status"] = bad.get("status", 0)
    run.print(f"sequential {m['sequential_tokens_per_s']:.1f} tok/s; concurrent ({cfg.concurrency} in flight) "
              f"{m['concurrent_tokens_per_s']:.1f} tok/s = {m['throughput_gain']:.2f}×; mean batch {m['mean_batch']:.1f}")
    run.print(f"TTFT p50/p90/p99 sequential {m['seq_ttft_p50_s']:.2f}/{m['seq_ttft_p90_s']:.2f}/"
              f"{m['seq_ttft_p99_s']:.2f} s, concurrent {m['conc_ttft_p50_s']:.2f}/{m['conc_ttft_p90_s']:.2f}/"
              f"{m['conc_ttft_p99_s']:.2f} s; per-token p50/p90 sequential {m['seq_per_token_p50_ms']:.0f}/"
              f"{m['seq_per_token_p90_ms']:.0f} ms, concurrent {m['conc_per_token_p50_ms']:.0f}/"
              f"{m['conc_per_token_p90_ms']:.0f} ms")
    _plot(run, seq, conc)
    checks = {"every concurrent request completed": m["completed"] == cfg.requests,
              "batched: concurrent ≥ 1.5× sequential tokens/s": m["throughput_gain"] >= 1.5,
              "a malformed request during the load got 400": m["bad_request_status"] == 400
              and "error" in bad.get("body", {})}
    notes = "\n".join(f"[{'x' if ok else ' '}] {c}" for c, ok in checks.items())
    notes += f"\nfirst answer: {conc[0]['text']!r}"
    return Verdict(held=all(checks.values()), metrics=m, notes=notes)


def _plot(run: Run, seq: list[dict], conc: list[dict]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for name, results in (("sequential", seq), ("concurrent", conc)):
        ttft = sorted(r["times"][0] for r in results if r["times"])
        gaps = sorted(1000 * (b - a) for r in results for a, b in zip(r["times"], r["times"][1:]))
        ax[0].plot(ttft, [i / max(len(ttft), 1) for i in range(1, len(ttft) + 1)], label=name)
        ax[1].plot(gaps, [i / max(len(gaps), 1) for i in range(1, len(gaps) + 1)], label=name)
    ax[0].set_xlabel("time to first token (s)")
    ax[1].set_xlabel("gap between tokens of a stream (ms)")
    for a in ax:
        a.set_ylabel("fraction of requests / gaps")
        a.legend()
    fig.tight_layout()
    run.savefig(fig, "s4_latency")
