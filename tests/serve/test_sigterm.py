"""`deepatlas serve` as a process: SIGTERM lets the in-flight stream finish, then it exits 0."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from deepatlas.serve.local import free_port
from tests.serve.conftest import http, stream_lines


def test_sigterm_finishes_in_flight_streams_then_exits():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "deepatlas", "serve", "--model", "tiny-random", "--weights",
                             "fp32", "--port", str(port), "--slots", "2", "--slot-len", "1024",
                             "--no-embeddings"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                http(url, "GET", "/models", timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.1)
        body = {"model": "tiny-random", "prompt": "Tell me", "max_tokens": 600, "temperature": 0,
                "stream": True}
        events = []
        for line in stream_lines(url, "/completions", body):
            events.append(line)
            if len(events) == 2:
                proc.send_signal(signal.SIGTERM)             # mid-stream
        assert events[-1] == "data: [DONE]"
        finishes = [json.loads(e[6:])["choices"][0]["finish_reason"] for e in events[:-1]]
        assert finishes[-1] in ("length", "stop") and len(events) > 3
        assert proc.wait(timeout=30) == 0
        try:
            http(url, "GET", "/models", timeout=1)
            raise AssertionError("the server still answers after SIGTERM")
        except OSError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
