"""Pushing events into a stream source from any process, through the source's one writer.

A source's event log has a single writer (its lock, ``connectors.event_log``). The process holding
it — a ``parity serve`` worker or ``parity stream`` — answers pushes on a Unix socket in a folder
only its user can open; every other process forwards its pushes there. When the writer's process
dies, its lock is freed and its socket refuses: the next push takes the lock and becomes the
writer (re-applying from the log what the store missed, as any restart does).

Concurrent pushes are committed together — what arrives during one commit is the next commit
(self-clocking group commit, as the stream consumer does) — and each push is answered with what
became of its own events, only after the commit that logged them. A push is atomic: one bad or too
late event refuses the push whole, and nothing of it is logged. A retry after a lost answer is
safe: the events are identified by their ids, so a second delivery counts as duplicates.

Wire between processes: a frame is a 4-byte big-endian length and JSON — the events one way, the
report (or an error) the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import stat
import struct
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any

import orjson

from parity.connectors.event_log import log_dir
from parity.errors import ConfigError, ParityError, StoreError, WriterBusy
from parity.ingest.stream import MessageReport
from parity.ports.stream import Incoming
from parity.runtime.freshness import write_freshness
from parity.semantics.time import now_micros

if TYPE_CHECKING:
    from parity.ingest.stream import StreamIngestor
    from parity.runtime.project import Project

log = logging.getLogger("parity.push")
_REPORT_FIELDS = frozenset(f.name for f in fields(MessageReport))  # a writer of another version may say more
MAX_FRAME = 64 << 20  # bytes: one push, or one answer
FORWARD_DEADLINE = 5.0  # seconds to reach a writer (or become it) before a push is refused as unavailable
FORWARD_TIMEOUT = 30.0  # seconds for a reached writer to answer (a commit, with its merge of segments)
_IDLE_CONNECTIONS = 16
_HEADER = struct.Struct(">I")


class PushUnavailable(StoreError):
    """No writer of the source could be reached, nor could this process become it."""


def socket_path(log_dir: str) -> str:
    """Where the writer of the log in ``log_dir`` listens. A private folder of this user, not the
    project's: a Unix socket path is limited to 107 bytes, and project folders can be deeper."""
    folder = os.path.join(tempfile.gettempdir(), f"parity-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ConfigError(f"{folder} must be a folder of this user that no one else can open (mode 700): the push "
                          "sockets live there; remove it, parity makes it again")
    digest = hashlib.sha256(os.path.realpath(log_dir).encode()).hexdigest()[:24]
    return os.path.join(folder, f"push-{digest}.sock")


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"a push frame of {size:,} bytes; at most {MAX_FRAME:,}")
    return await reader.readexactly(size)


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


class PushWriter:
    """In the process holding a source's writer: commits pushes together, answers each one.

    ``executor`` is the one thread the ingestor writes from (``parity stream`` shares its own, so
    the transport's batches and the pushes are commits of one writer, in turn)."""

    def __init__(self, ingestor: StreamIngestor, executor: ThreadPoolExecutor,
                 on_commit: Callable[[], None] | None = None) -> None:
        self.ingestor, self.executor, self.on_commit = ingestor, executor, on_commit
        self._pending: list[tuple[Incoming, asyncio.Future[MessageReport]]] = []
        self._drainer: asyncio.Task[None] | None = None  # held: a task only the loop references can vanish
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.path: str | None = None

    async def push(self, events: bytes | Sequence[object]) -> MessageReport:
        future: asyncio.Future[MessageReport] = asyncio.get_running_loop().create_future()
        self._pending.append((Incoming(events, received_us=now_micros(), atomic=True), future))  # type: ignore[arg-type]
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    report = await loop.run_in_executor(
                        self.executor, functools.partial(self.ingestor.ingest, [m for m, _ in batch], itemize=True))
                except BaseException as exc:  # every push of the commit is told; the writer goes on
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc if isinstance(exc, Exception) else StoreError(str(exc)))
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), item in zip(batch, report.messages or ()):
                    if not future.done():
                        future.set_result(item)
                if self.on_commit is not None:
                    try:
                        self.on_commit()
                    except Exception:  # freshness is informative: the pushes queued meanwhile still commit
                        log.warning("writing the freshness of %r failed", self.ingestor.source.name, exc_info=True)
        finally:
            self._drainer = None

    async def listen(self, path: str) -> None:
        """Answer the pushes other processes forward to ``path`` (see the module's doc)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # this process holds the writer's lock: a socket left there is a dead writer's
        self._server = await asyncio.start_unix_server(self._serve, path=path, limit=MAX_FRAME)
        os.chmod(path, 0o600)
        self.path = path

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    payload = await _read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                answer: dict[str, object]
                try:
                    answer = {"report": asdict(await self.push(payload))}
                except ParityError as exc:  # ours, written to be read: the forwarder's caller gets it
                    answer = {"error": str(exc)}
                except Exception:  # anything else stays in this log; this writer goes on
                    log.exception("a forwarded push into %r failed", self.ingestor.source.name)
                    answer = {"error": "the writer failed the push; the error is in its log"}
                writer.write(_frame(orjson.dumps(answer)))
                await writer.drain()
        finally:
            self._connections.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):  # forwarders keep theirs open: closed here, or
                connection.close()                     # wait_closed waits for them (Python ≥ 3.12.1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                if self.path is not None:
                    os.unlink(self.path)


class PushRouter:
    """One per process: a push goes to this process's writer of the source, or is forwarded to the
    process that is its writer — or this process becomes it when no one is."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._writers: dict[str, PushWriter] = {}
        self._executors: list[ThreadPoolExecutor] = []
        self._idle: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self._becoming: dict[str, asyncio.Lock] = {}
        # A source a broker feeds is written by ``parity stream`` (it takes the pushes too): a
        # server never takes its writer, or the consumer could not start while the server runs.
        self._consumed = {name for name, source in project.catalog.stream_sources().items()
                          if source.nats is not None or source.mqtt is not None}

    def _socket(self, source: str) -> str:
        return socket_path(log_dir(self.project.settings.resolve("."), source))

    async def adopt(self, ingestor: StreamIngestor, executor: ThreadPoolExecutor,
                    on_commit: Callable[[], None] | None = None) -> PushWriter:
        """This process is the source's writer already (``parity stream``): answer pushes too."""
        writer = self._writers[ingestor.source.name] = PushWriter(ingestor, executor, on_commit)
        await writer.listen(self._socket(ingestor.source.name))
        return writer

    async def try_to_write(self, source: str) -> bool:
        """Take the source's writer if no process holds it (at start, and when its writer died);
        never for a source a broker feeds (``parity stream`` writes it)."""
        if source in self._consumed:
            return False
        lock = self._becoming.setdefault(source, asyncio.Lock())
        async with lock:
            if source in self._writers:
                return True
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"parity-push-{source}")
            try:
                ingestor = await asyncio.get_running_loop().run_in_executor(
                    executor, lambda: self.project.ingestor(source))
            except WriterBusy:
                executor.shutdown(wait=False)
                return False
            except BaseException:  # the store down during recovery, a bad socket folder: said by the caller
                executor.shutdown(wait=False)
                raise
            self._executors.append(executor)
            written = [0.0]

            def freshness() -> None:  # what parity stream writes for the sources it consumes
                now = time.monotonic()
                if now - written[0] > 1.0:
                    written[0] = now
                    write_freshness(self.project.settings.root, source, {**ingestor.freshness(), "consumer_lag": None})

            await self.adopt(ingestor, executor, freshness)
            return True

    async def push(self, source: str, events: Sequence[object]) -> MessageReport:
        """Commit ``events`` (atomically) into ``source`` and say what became of them."""
        deadline = time.monotonic() + FORWARD_DEADLINE
        payload: bytes | None = None
        pause = 0.01
        while True:
            writer = self._writers.get(source)
            if writer is not None:
                return await writer.push(events)
            if payload is None:
                payload = orjson.dumps(events)
            try:
                return await asyncio.wait_for(self._forward(source, payload), FORWARD_TIMEOUT)
            except TimeoutError:  # a writer that does not answer: a retry is safe (ids), but not here
                self._drop_idle(source)
                raise PushUnavailable(f"stream source {source!r}: its writer did not answer within "
                                      f"{FORWARD_TIMEOUT:g} s; retry") from None
            except (OSError, asyncio.IncompleteReadError):
                self._drop_idle(source)  # one dead connection means the pool is the dead writer's
            if await self.try_to_write(source):
                continue
            if time.monotonic() > deadline:
                if source in self._consumed:
                    raise PushUnavailable(f"stream source {source!r} is fed by a broker: its pushes go to its "
                                          "`parity stream` consumer, which is not running; start it")
                raise PushUnavailable(f"stream source {source!r}: another process holds its writer and does not "
                                      f"answer pushes (within {FORWARD_DEADLINE:g} s); is it a parity stream "
                                      "of an older version, or a Python process using project.push?")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    def _drop_idle(self, source: str) -> None:
        for _, connection in self._idle.pop(source, []):
            connection.close()

    async def _forward(self, source: str, payload: bytes) -> MessageReport:
        idle = self._idle.setdefault(source, [])
        if idle:
            reader, writer = idle.pop()
        else:
            path = self._socket(source)
            reader, writer = await asyncio.open_unix_connection(path, limit=MAX_FRAME)
        try:
            writer.write(_frame(payload))
            await writer.drain()
            answer: dict[str, Any] = orjson.loads(await _read_frame(reader))
        except BaseException:
            writer.close()
            raise
        if len(idle) < _IDLE_CONNECTIONS:
            idle.append((reader, writer))
        else:
            writer.close()
        if "error" in answer:
            raise StoreError(f"stream source {source!r}: its writer failed the push: {answer['error']}")
        report = answer["report"]
        report["errors"] = [tuple(e) for e in report["errors"]]
        return MessageReport(**{name: value for name, value in report.items() if name in _REPORT_FIELDS})

    async def close(self) -> None:
        for connections in self._idle.values():
            for _, connection in connections:
                connection.close()
        self._idle.clear()
        for writer in self._writers.values():
            await writer.close()
        self._writers.clear()
        for executor in self._executors:
            executor.shutdown(wait=True)  # a commit under way finishes
        self._executors.clear()
