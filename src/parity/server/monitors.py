"""Monitors on a schedule in ``parity serve``: ``parity monitor`` every ``[monitor] interval``, with a
webhook on every new breach.

One worker runs them — the one that takes ``.parity/monitor.lock`` (an exclusive ``flock``; when that
worker exits, the lock is free and another takes it at its next try). Each run watches the current
and the previous bucket (a bucket's verdict settles once it is over), on a project of its own in a
thread, so requests never wait on it; its points go to the monitoring store, where
``GET /v1/monitor`` and the metrics read them. A breach (drift, a null burst, an expectation, a
stale view) is POSTed once per metric, feature version and window to the webhook as JSON, with
three tries; a webhook that fails is logged and counted, never a reason to stop monitoring. The
webhook URL is a reference (``env:``/``file:``): it often carries a token, so it is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from typing import IO, Any

from parity.define.windows import parse_width
from parity.errors import ParityError
from parity.ports.secret import Secret
from parity.runtime.monitoring import watch_log
from parity.runtime.project import Project
from parity.semantics.time import iso_micros, now_micros
from parity.server import metrics

log = logging.getLogger("parity.server.monitors")
TRIES = 3


class Monitors:
    def __init__(self, root: str, interval_s: float, bucket: str, webhook: Secret | None) -> None:
        self.root, self.interval_s, self.webhook = root, interval_s, webhook
        width = parse_width(bucket, "monitor.bucket")
        assert width is not None  # settings refuse "lifetime"
        self.bucket_us = width
        self._notified: set[tuple[str, str, str, int]] = set()
        self._lock: IO[str] | None = None
        self._project: Project | None = None

    def _take_lock(self) -> bool:
        if self._lock is not None:
            return True
        path = os.path.join(self.root, ".parity", "monitor.lock")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 - held for the worker's life: the lock is the open file
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock = handle
        return True

    def run_once(self) -> list[dict[str, Any]]:
        """Watch the current and the previous bucket; the breaches not yet notified."""
        from parity.connectors.feature_log_parquet import ParquetFeatureLog

        if self._project is None:
            self._project = Project.load(self.root)
        project = self._project
        now = now_micros()
        since = (now // self.bucket_us - 1) * self.bucket_us
        until = (now // self.bucket_us + 1) * self.bucket_us
        run = watch_log(project, ParquetFeatureLog(project.settings.resolve(".")).read(since, until),
                        since_us=since, until_us=until, bucket_us=self.bucket_us, now_us=now)
        fresh: list[dict[str, Any]] = []
        for w in run.watches:
            found: list[tuple[str, tuple[int, int], dict[str, object]]] = [
                (metric, window, {"value": r.value, "threshold": r.threshold, "method": r.method,
                                  "contributors": r.contributors}) for metric, window, r in w.alarms()]
            found += [("expectation", window, {"broken": [v.describe() for v in broken]})
                      for window, broken in zip(w.windows, w.breaches) if broken]
            for metric, (start, end), detail in found:
                fresh.append({"metric": metric, "feature": w.feature, "version": w.version,
                              "window_start": iso_micros(start), "window_end": iso_micros(end), "start_us": start, **detail})
        for view, newest, limit, at_us, broken in run.freshness:
            if broken:
                fresh.append({"metric": "freshness", "feature": f"view {view}", "version": "",
                              "window_start": iso_micros(at_us), "window_end": iso_micros(at_us), "start_us": at_us // self.bucket_us,
                              "newest_event": None if newest is None else iso_micros(newest), "expected_within_s": limit,
                              "broken": [v.describe() for v in broken]})
        new = [b for b in fresh if (b["metric"], b["feature"], b["version"], b["start_us"]) not in self._notified]
        self._notified.update((b["metric"], b["feature"], b["version"], b["start_us"]) for b in new)
        for b in new:
            del b["start_us"]
        return new

    async def notify(self, breaches: list[dict[str, Any]]) -> None:
        if self.webhook is None or not breaches:
            return
        import httpx

        url = self.webhook.reveal()
        async with httpx.AsyncClient(timeout=5.0) as client:
            for breach in breaches:
                for attempt in range(TRIES):
                    try:
                        response = await client.post(url, json={"parity": "monitor breach", **breach})
                        if response.status_code < 300:
                            metrics.MONITOR_WEBHOOKS.labels("delivered").inc()
                            break
                        problem = f"status {response.status_code}"
                    except httpx.HTTPError as exc:
                        problem = type(exc).__name__  # not str(exc): it can quote the URL
                    if attempt == TRIES - 1:
                        metrics.MONITOR_WEBHOOKS.labels("failed").inc()
                        log.warning("monitor webhook (%s) refused a breach of %s after %d tries: %s",
                                    self.webhook.reference, breach["feature"], TRIES, problem)
                    else:
                        await asyncio.sleep(0.2 * 2 ** attempt)

    async def loop(self) -> None:
        while True:
            if self._take_lock():
                try:
                    breaches = await asyncio.to_thread(self.run_once)
                    metrics.MONITOR_RUNS.labels("ok").inc()
                    await self.notify(breaches)
                except (ParityError, OSError):
                    metrics.MONITOR_RUNS.labels("failed").inc()
                    log.exception("a scheduled monitor run failed; the next one runs in %.0f s", self.interval_s)
            await asyncio.sleep(self.interval_s)

    def close(self) -> None:
        if self._project is not None:
            self._project.close()
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
