"""`deepatlas chat --server URL` talks to a running server (in-process here: main() with stdin)."""
from __future__ import annotations

import io
import sys

from deepatlas.cli import main
from deepatlas.serve.client import RemoteSession


def test_chat_cli_against_the_server(server, monkeypatch, capsys):
    want = RemoteSession(server.url, max_new_tokens=6).reply("Hello there", lambda piece: None)
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello there\n/reset\n/exit\n"))
    rc = main(["chat", "--server", server.url.removesuffix("/v1"), "--max-new-tokens", "6"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"bot> {want}\n" in out and "[conversation cleared]" in out


def test_chat_cli_server_unreachable(capsys):
    from deepatlas.serve.local import free_port

    rc = main(["chat", "--server", f"http://127.0.0.1:{free_port()}"])
    assert rc == 2 and "cannot reach" in capsys.readouterr().err
