import time

from deepatlas.agents.sandbox import run_python


def test_code_runs_in_a_temporary_folder():
    r = run_python("import os; open('f.txt', 'w').write('hi'); print(os.getcwd(), sorted(os.listdir('.')))")
    assert r.ok and "deepatlas-sandbox-" in r.stdout and "['f.txt']" in r.stdout


def test_infinite_loop_is_stopped():
    t = time.perf_counter()
    r = run_python("while True:\n    pass", seconds=1.0)
    assert not r.ok and "time limit" in r.error and time.perf_counter() - t < 5


def test_memory_bomb_is_stopped():
    r = run_python("x = bytearray(1 << 31)\nprint(len(x))", memory_mb=200)
    assert not r.ok and r.error == "memory limit of 200 MB exceeded"


def test_network_is_blocked():
    for code in ("import socket; socket.create_connection(('127.0.0.1', 9))",
                 "import urllib.request; urllib.request.urlopen('http://example.com', timeout=1)",
                 "import _socket; _socket.socket()"):
        r = run_python(code)
        assert not r.ok and "network access is disabled" in r.error, (code, r)


def test_exceptions_and_empty_code_are_tool_errors():
    assert run_python("1/0").error == "ZeroDivisionError: division by zero"
    assert run_python("  ").error == "no code given"
