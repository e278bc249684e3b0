"""parity.Client's retry rule against a scripted HTTP peer: reads are retried on 502/503/504
while attempts remain, never on a 4xx, by both clients."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import parity as pt
from parity.errors import RequestError

OK = {"features": ["user.x"], "dtypes": {"user.x": "Float64"}, "rows": [{"user.x": "NaN"}]}


def _peer(statuses: list[int]):  # type: ignore[no-untyped-def]
    """A server answering each request with the next status of ``statuses`` (then 200 with OK)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen.append(self.path)
            status = statuses.pop(0) if statuses else 200
            body = json.dumps(OK if status == 200 else {"error": {"code": "overloaded" if status >= 500 else
                                                                   "invalid_field", "message": "m", "field": "f"}})
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_a_read_is_retried_on_503_until_it_succeeds_and_values_come_back_by_dtype():
    server, seen = _peer([503, 502])
    with pt.Client(f"http://127.0.0.1:{server.server_port}", "t", retries=2, backoff=0.001) as client:
        result = client.query({"user_id": [1]}, ["user.x"])
    server.shutdown()
    assert len(seen) == 3 and repr(result.rows) == "[{'user.x': nan}]"


def test_retries_run_out_and_a_4xx_is_never_retried():
    server, seen = _peer([503, 503, 503, 400])
    with pt.Client(f"http://127.0.0.1:{server.server_port}", "t", retries=2, backoff=0.001) as client:
        with pytest.raises(RequestError) as out:
            client.query({"user_id": [1]}, ["user.x"])
        assert out.value.status == 503 and len(seen) == 3
        with pytest.raises(RequestError) as bad:
            client.query({"user_id": [1]}, ["user.x"])
        assert (bad.value.status, bad.value.code, bad.value.field) == (400, "invalid_field", "f") and len(seen) == 4
    server.shutdown()


def test_the_async_client_follows_the_same_rule():
    import asyncio

    server, seen = _peer([504])

    async def ask() -> object:
        async with pt.AsyncClient(f"http://127.0.0.1:{server.server_port}", "t", retries=1, backoff=0.001) as client:
            return await client.query({"user_id": [1]}, ["user.x"])

    result = asyncio.run(ask())
    server.shutdown()
    assert len(seen) == 2 and repr(result.rows) == "[{'user.x': nan}]"  # type: ignore[attr-defined]
