"""``parity serve`` as the e2e tests start it: a free port, the process, and a wait for health."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(root: Path, workers: int = 2, timeout: float = 30.0) -> tuple[subprocess.Popen[str], str]:
    """Start ``parity serve`` over ``root`` and wait until it answers ``/v1/health``; its stderr is
    in the error when it exits or does not answer in time."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "parity", "-C", str(root), "serve", "--port", str(port),
                             "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(base + "/v1/health").status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"parity serve did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
