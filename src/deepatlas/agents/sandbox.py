"""Python execution in a sandboxed subprocess: a fresh interpreter (-I: no site, no env vars) in
a temporary working directory (deleted after), under resource limits (RLIMIT_CPU seconds,
RLIMIT_AS bytes of address space, RLIMIT_FSIZE bytes per file, RLIMIT_NPROC) with a wall-clock
timeout, and without network: the child is put in a new user + network namespace when the
kernel allows it (unshare), and in any case its socket module refuses to connect or resolve.
Each limit reached is reported as a clear error, never a hang or a crashed caller.
"""
from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
# runs in the child before the user's code: every socket entry point raises
PRELUDE = r'''
import socket as _s, _socket as _ss
def _blocked(*a, **k):
    raise OSError("network access is disabled in the sandbox")
class _NoSocket:
    def __init__(self, *a, **k):
        _blocked()
for _m in (_s, _ss):
    _m.socket = _NoSocket
    for _name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex", "socketpair", "fromfd",
                  "create_server"):
        if hasattr(_m, _name):
            setattr(_m, _name, _blocked)
del _s, _ss, _m, _name
'''


@dataclass
class SandboxResult:
    ok: bool
    stdout: str
    error: str          # "" when ok

    def text(self, limit: int = 2000) -> str:
        out = self.stdout if self.ok else f"error: {self.error}" + (f"\nstdout: {self.stdout}" if self.stdout else "")
        return out if len(out) <= limit else out[:limit] + " …"


def _limits(seconds: float, memory_mb: int) -> None:
    """In the child, before exec: resource limits, then (if allowed) a namespace without network."""
    cpu = max(1, int(seconds + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.unshare(CLONE_NEWUSER | CLONE_NEWNET)     # fails quietly without user namespaces
    except (OSError, AttributeError):
        pass


def run_python(code: str, seconds: float = 2.0, memory_mb: int = 256) -> SandboxResult:
    """Run `code`; its stdout is the result. Errors: time limit, memory limit, network, exceptions."""
    if not code.strip():
        return SandboxResult(False, "", "no code given")
    with tempfile.TemporaryDirectory(prefix="deepatlas-sandbox-") as tmp:
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", PRELUDE + "\n" + code], cwd=tmp,
                                  capture_output=True, text=True, timeout=seconds,
                                  env={"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp},
                                  preexec_fn=lambda: _limits(seconds, memory_mb))
        except subprocess.TimeoutExpired as err:
            out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            return SandboxResult(False, out, f"time limit of {seconds:g} s exceeded (the process was killed)")
    stderr = proc.stderr.strip()
    if proc.returncode == 0:
        return SandboxResult(True, proc.stdout.strip(), "")
    last = stderr.splitlines()[-1] if stderr else ""
    if "MemoryError" in stderr or proc.returncode == -9 and not stderr:
        return SandboxResult(False, proc.stdout, f"memory limit of {memory_mb} MB exceeded")
    if proc.returncode in (-24, -9):      # SIGXCPU / SIGKILL after RLIMIT_CPU
        return SandboxResult(False, proc.stdout, f"CPU time limit of {seconds:g} s exceeded")
    if "network access is disabled" in stderr or "Network is unreachable" in stderr:
        return SandboxResult(False, proc.stdout, "network access is disabled in the sandbox")
    return SandboxResult(False, proc.stdout, last or f"exit status {proc.returncode}")
