"""``parity.Client`` / ``parity.AsyncClient``: the HTTP API from Python, answering with the same
``QueryResult`` as ``Project.query``.

>>> with pt.Client("http://127.0.0.1:8000", token=os.environ["PARITY_TOKEN"]) as client:
...     result = client.query({"user_id": [1, 2]}, ["user.country", "user.limit"], with_status=True)

One connection pool per client (keep-alive), a timeout per request (default 2 s), and retries only
where they are safe: a query and the catalog are reads, and a push is idempotent by event id (a
second delivery counts as duplicates), so a connection failure or a 502/503/504 (``overloaded``,
``store_unavailable``) is retried with backoff, twice by default; a 4xx never is.
Errors mirror the server's codes: 401 → ``AuthenticationError``, 403 → ``AccessDenied`` (with
``denied``), any other refusal → ``RequestError`` carrying ``status``, ``code`` and ``field``.
Values come back by their dtype (``semantics.wire``): NaN, infinities, times and dates as
``Project.query`` gives them. Needs ``parity[http]``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

from parity.errors import AccessDenied, AuthenticationError, MissingExtraError, ParityError, RequestError
from parity.online.result import FeatureValue, QueryResult
from parity.semantics.wire import from_json, to_json

_RETRY_STATUSES = frozenset({502, 503, 504})
_RETRY = object()  # an attempt's result that says: try again


def _httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise MissingExtraError("httpx", "http") from None
    return httpx


def _query_body(entities: object, features: str | Sequence[str], now: dt.datetime | None,
                with_status: bool) -> dict[str, object]:
    body: dict[str, object] = {"entities": to_json(entities), "features": [features] if isinstance(features, str)
                               else list(features), "with_status": with_status}
    if now is not None:
        if now.tzinfo is None:
            raise ParityError("now must carry a time zone (e.g. datetime.now(timezone.utc))")
        body["now"] = now.isoformat()
    return body


def _push_body(events: Mapping[str, object] | Sequence[Mapping[str, object]]) -> dict[str, object]:
    return {"events": to_json([events] if isinstance(events, Mapping) else list(events))}


def _raise_for(response: Any) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        code, message, field = str(error["code"]), str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        raise RequestError(response.status_code, "http_error", response.text[:200] or response.reason_phrase) from None
    if response.status_code == 401:
        raise AuthenticationError(message)
    if response.status_code == 403 and code == "forbidden":
        denied = error.get("denied") or {}
        raise AccessDenied("this token", {str(k): str(v) for k, v in denied.items()})
    raise RequestError(response.status_code, code, message, field)


def _result(payload: dict[str, Any]) -> QueryResult:
    dtypes: dict[str, str] = payload.get("dtypes", {})
    features = tuple(payload["features"])
    rows = [{ref: from_json(v, dtypes.get(ref, "")) for ref, v in row.items()} for row in payload["rows"]]
    details = None
    if "details" in payload:
        details = [{ref: FeatureValue(rows[i][ref], d["status"],
                                      dt.datetime.fromisoformat(d["event_time"]) if d.get("event_time") else None,
                                      d.get("error"))
                    for ref, d in row.items()} for i, row in enumerate(payload["details"])]
    return QueryResult(features, rows, details)


class _Base:
    def __init__(self, url: str, token: str, *, timeout: float, retries: int, backoff: float) -> None:
        if not url.startswith(("http://", "https://")):
            raise ParityError(f"the server URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def _pause(self, attempt: int) -> float:
        return float(self.backoff * (2**attempt))

    def _outcome(self, path: str, attempt: int, response: Any, failure: BaseException | None) -> Any:
        """One attempt's result — the payload, ``_RETRY`` (unreachable, or a 502/503/504, with
        attempts left), or the typed error — the one retry rule of both clients."""
        last = attempt == self.retries
        if failure is not None:
            if last:
                raise RequestError(0, "unreachable", f"{self.url}{path}: {type(failure).__name__}: {failure}")
            return _RETRY
        if response.status_code in _RETRY_STATUSES and not last:
            return _RETRY
        _raise_for(response)
        return response.json()


class Client(_Base):
    """A synchronous client; use it as a context manager, or call ``close``."""

    def __init__(self, url: str, token: str, *, timeout: float = 2.0, retries: int = 2, backoff: float = 0.05) -> None:
        super().__init__(url, token, timeout=timeout, retries=retries, backoff=backoff)
        self._http = _httpx().Client(base_url=self.url, headers=self._headers, timeout=timeout)

    def _send(self, method: str, path: str, body: object = None) -> Any:
        transport_error = _httpx().TransportError
        for attempt in range(self.retries + 1):
            response, failure = None, None
            try:
                response = self._http.request(method, path, json=body)
            except transport_error as exc:
                failure = exc
            payload = self._outcome(path, attempt, response, failure)
            if payload is not _RETRY:
                return payload
            time.sleep(self._pause(attempt))
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def query(self, entities: Mapping[str, object] | Sequence[Mapping[str, object]], features: str | Sequence[str],
              *, now: dt.datetime | None = None, with_status: bool = False) -> QueryResult:
        return _result(self._send("POST", "/v1/query", _query_body(entities, features, now, with_status)))

    def push(self, source: str, events: Mapping[str, object] | Sequence[Mapping[str, object]]) -> dict[str, Any]:
        """Events into a stream source, answered after their commit: accepted, duplicates (by event
        id — which is what makes a retry safe), late_applied, first_seq, last_seq."""
        return dict(self._send("POST", f"/v1/push/{source}", _push_body(events)))

    def catalog(self) -> list[dict[str, object]]:
        return list(self._send("GET", "/v1/catalog")["features"])

    def training_set(self, spine: object, features: str | Sequence[str], *, timestamp_column: str = "timestamp",
                     with_status: bool = False, wait: float = 600.0) -> Any:
        """Submit a training-set job (the spine travels as Parquet), wait for it, and return the
        table (``pyarrow.Table``) — the same as ``Project.training_set`` with this token's principal."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from parity.offline.spine import to_arrow

        sink = pa.BufferOutputStream()
        pq.write_table(to_arrow(spine), sink)
        names = [features] if isinstance(features, str) else list(features)
        params = {"features": ",".join(names), "timestamp_column": timestamp_column,
                  "with_status": "true" if with_status else "false"}
        # a submission is not idempotent: sent once, never retried
        response = self._http.post("/v1/training-sets", content=sink.getvalue().to_pybytes(), params=params,
                                   headers={"Content-Type": "application/vnd.apache.parquet"})
        _raise_for(response)
        job = response.json()
        deadline, pause = time.monotonic() + wait, 0.05
        while job["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise RequestError(0, "timeout", f"training set job {job['id']} still {job['status']} after {wait:g} s")
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            job = self._send("GET", f"/v1/training-sets/{job['id']}")
        if job["status"] != "done":
            raise RequestError(200, "job_failed", f"training set job {job['id']} failed: {job.get('error')}")
        result = self._http.get(f"/v1/training-sets/{job['id']}/result")
        _raise_for(result)
        return pq.read_table(pa.BufferReader(result.content))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """The same over asyncio: ``async with pt.AsyncClient(url, token) as client: await client.query(...)``."""

    def __init__(self, url: str, token: str, *, timeout: float = 2.0, retries: int = 2, backoff: float = 0.05) -> None:
        super().__init__(url, token, timeout=timeout, retries=retries, backoff=backoff)
        self._http = _httpx().AsyncClient(base_url=self.url, headers=self._headers, timeout=timeout)

    async def _send(self, method: str, path: str, body: object = None) -> Any:
        transport_error = _httpx().TransportError
        for attempt in range(self.retries + 1):
            response, failure = None, None
            try:
                response = await self._http.request(method, path, json=body)
            except transport_error as exc:
                failure = exc
            payload = self._outcome(path, attempt, response, failure)
            if payload is not _RETRY:
                return payload
            await asyncio.sleep(self._pause(attempt))
        raise AssertionError("unreachable")

    async def query(self, entities: Mapping[str, object] | Sequence[Mapping[str, object]],
                    features: str | Sequence[str], *, now: dt.datetime | None = None,
                    with_status: bool = False) -> QueryResult:
        return _result(await self._send("POST", "/v1/query", _query_body(entities, features, now, with_status)))

    async def push(self, source: str,
                   events: Mapping[str, object] | Sequence[Mapping[str, object]]) -> dict[str, Any]:
        return dict(await self._send("POST", f"/v1/push/{source}", _push_body(events)))

    async def catalog(self) -> list[dict[str, object]]:
        return list((await self._send("GET", "/v1/catalog"))["features"])

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
