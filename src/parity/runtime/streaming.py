"""``parity stream``: consume every stream source's transport into its ingestor.

Per batch: ``StreamIngestor.ingest`` (validate, dedup, commit to the log, apply), then the
transport's ack. The ingest runs on a worker thread of its own (one per source: the ingestor is a
single writer, and the store's SQLite connection is per thread) while the event loop goes on
receiving: the next batch is what arrived during this commit, so commits grow with the load
(group commit, self-clocking) — few events each when the stream is quiet, tens of thousands when
it is behind, where a commit's page writes are shared by many events. A crash at any point loses nothing and counts nothing twice: before the commit the
transport redelivers (NATS resumes at the log's position, MQTT redelivers unacknowledged
messages); after it, the log holds the events, the restart re-applies what the online store missed
and drops redelivered ids. While it runs, the consumer is also the writer that pushes from other
processes reach (``runtime.push``). Freshness (event → servable, receive → servable, consumer lag) is
written to ``.parity/freshness/<source>.json`` every second for ``parity freshness``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from parity.define.sources import StreamSource
from parity.errors import ConfigError
from parity.ports.stream import Transport
from parity.runtime.freshness import freshness_path, write_freshness
from parity.runtime.push import PushRouter
from parity.runtime.secrets import connection

if TYPE_CHECKING:
    from parity.runtime.project import Project

Progress = Callable[[str], None]


def transport_for(project: Project, source: StreamSource) -> Transport:
    settings = project.settings
    if source.nats is not None:
        from parity.connectors.nats_stream import NatsTransport

        url = connection(settings.nats_url, root=settings.root, what="streams.nats_url").reveal()
        return NatsTransport(url, source.nats)
    if source.mqtt is not None:
        from parity.connectors.mqtt_stream import MqttTransport

        url = connection(settings.mqtt_url, root=settings.root, what="streams.mqtt_url").reveal()
        return MqttTransport(url, source.mqtt, client_id=f"parity-{settings.name}-{source.name}")
    raise ConfigError(f"stream source {source.name!r} has no transport (nats= or mqtt=); feed it with project.push")


async def consume(project: Project, source: StreamSource, *, idle_exit: float | None = None,
                  progress: Progress | None = None) -> dict[str, int]:
    """Consume one source until ``idle_exit`` seconds pass without a message (None: forever)."""
    ingestor = project.ingestor(source.name)
    transport = transport_for(project, source)
    totals = {"accepted": 0, "duplicates": 0, "dead": 0, "late_applied": 0, "late_dead": 0, "warned": 0}
    if ingestor.recovered and progress:
        progress(f"{source.name}: re-applied {ingestor.recovered:,} logged events the online store had not seen")
    _steady_collector()
    await transport.start(ingestor.positions.get("committed"))
    if progress:
        progress(f"{source.name}: consuming {transport.describe} after position {ingestor.positions.get('committed')}")
    written = 0.0
    lag: int | None = None
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"parity-ingest-{source.name}")  # see above
    pushes = PushRouter(project)
    await pushes.adopt(ingestor, worker)  # the writer answers pushes too (the server's push endpoint forwards here)
    try:
        async for batch in transport.batches(idle_exit):
            report = await loop.run_in_executor(worker, ingestor.ingest, batch)
            await transport.ack(batch)
            for name in totals:
                totals[name] += getattr(report, name)
            if report.warnings and progress:
                progress(f"{source.name}: {report.warned:,} applied events broke an expectation, e.g. "
                         f"{report.warnings[0]}")
            now = time.monotonic()
            if now - written > 1.0:
                written = now
                stats = ingestor.freshness()
                try:
                    lag = await transport.lag(ingestor.positions.get("committed"))
                except Exception:  # noqa: BLE001 - lag is informative; the consumer keeps running
                    lag = None
                stats["consumer_lag"] = lag
                write_freshness(project.settings.root, source.name, stats)
                if progress:
                    progress(f"{source.name}: {totals['accepted']:,} accepted, {totals['duplicates']:,} duplicates, "
                             f"{totals['dead']:,} dead-lettered (log at {ingestor.last_seq:,})")
    finally:
        await pushes.close()
        worker.shutdown(wait=True)  # a commit under way finishes, or the log never saw it
        stats = ingestor.freshness()
        with contextlib.suppress(Exception):  # the broker may be gone: the last measured lag stands
            lag = await transport.lag(ingestor.positions.get("committed"))
        stats["consumer_lag"] = lag
        path = freshness_path(project.settings.root, source.name)
        if stats["event_to_servable"] is not None or not os.path.exists(path):  # keep the last run that measured
            write_freshness(project.settings.root, source.name, stats)
        await transport.close()
    return totals


# Objects a commit allocates (a few per event: rows, index tuples, states) live until the commit
# ends and are no garbage, yet CPython's collector runs every 700 allocations and, as they survive,
# scans its older generations — with the writer's caches and the id set — again and again. At
# 50k events/s that put collector pauses in the event → servable tail (p99 143–203 ms in three
# runs, 113–127 ms with this, alternated: bench/RESULTS.md).
COLLECT_EVERY = 100_000  # allocations between young collections (CPython's default: 700)


def _steady_collector() -> None:
    """Freeze what the consumer holds for good (modules, the catalog, the ingestor's state: never
    scanned again) and collect young objects rarely; cycles are still collected, later."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(COLLECT_EVERY, middle, old)


async def consume_all(project: Project, sources: list[StreamSource], *, idle_exit: float | None = None,
                      progress: Progress | None = None) -> list[dict[str, int]]:
    return list(await asyncio.gather(*(consume(project, s, idle_exit=idle_exit, progress=progress) for s in sources)))
