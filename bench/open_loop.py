"""An open-loop (constant request rate) HTTP/1.1 load client, for tail latency without coordinated
omission: request i is due at start + i / rate whatever happened to earlier ones, and its latency
is measured from when it was due (or, when the client's own timer woke late, from when the client
got to it), not from when a connection was free to send it (what wrk and other closed-loop clients
report, which hides a server's stalls — the reason wrk2 exists; it is not packaged here). Requests go over a pool of keep-alive connections, opened as needed up to
``max_connections``; a request due while every connection is busy waits, and that wait counts.

Raw asyncio streams with the request bytes built once, so the client costs a few tens of µs per
request and stays out of the way of the server it measures (both share the machine's two cores).
"""

from __future__ import annotations

import asyncio
import time


def request_bytes(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
            f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, payload: bytes) -> int:
        self.writer.write(payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


async def constant_rate(port: int, payloads: list[bytes], rate: float, seconds: float, *,
                        max_connections: int = 256) -> dict[str, float]:
    """Send ``rate`` requests per second for ``seconds`` (cycling through ``payloads``)."""
    idle: list[_Connection] = []
    opened = 0
    latencies: list[float] = []
    errors = 0
    late_starts = 0
    total = int(rate * seconds)
    done = asyncio.Event()
    finished = 0
    waiting: asyncio.Queue[None] = asyncio.Queue()

    async def connection() -> _Connection:
        nonlocal opened
        while True:
            if idle:
                return idle.pop()
            if opened < max_connections:
                opened += 1
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                return _Connection(reader, writer)
            await waiting.get()  # a connection comes back

    async def one(i: int, due: float) -> None:
        nonlocal errors, finished
        # From when the client got to it: the event loop's timers wake up to a millisecond late
        # (epoll's resolution), which is the client's lag, not the server's. A request waiting for
        # a free connection (every one busy with a slow answer) is the server's, and counts.
        started = max(due, time.perf_counter())
        conn = await connection()
        try:
            status = await conn.exchange(payloads[i % len(payloads)])
            if status != 200:
                errors += 1
            idle.append(conn)
            waiting.put_nowait(None)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        latencies.append(time.perf_counter() - started)
        finished += 1
        if finished == total:
            done.set()

    loop = asyncio.get_running_loop()
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            late_starts += 1  # the client itself fell behind: said, not hidden
        tasks.append(loop.create_task(one(i, due)))
    await asyncio.wait_for(done.wait(), timeout=seconds + 60)
    for conn in idle:
        conn.writer.close()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(int(len(latencies) * q), len(latencies) - 1)] * 1e3

    return {"rate": rate, "requests": len(latencies), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "p99.9_ms": pct(0.999), "max_ms": latencies[-1] * 1e3, "errors": errors,
            "connections": opened, "client_late_starts": late_starts}
