"""``parity serve``: the HTTP API (Starlette, orjson) over one project.

Versioned under ``/v1``. Every endpoint but health and readiness needs ``Authorization: Bearer
pty_…`` (``server.tokens``); what a token's principal may see is decided by the one access
decision (``plan.access``) that guards the Python API too. Bad input of any kind is a 4xx whose
body is ``{"error": {"code": …, "message": …, "field": …}}`` — a machine-readable code, one line
for a human, the field at fault — and never a 500; limits on body size, entities per request and
concurrent requests keep one hostile client from starving the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import difflib
import gc
import itertools
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from parity.define.access import Principal
from parity.errors import (
    AccessDenied,
    AuthenticationError,
    EntityKeyError,
    ParityError,
    StoreError,
    UnknownFeatureError,
    one_line,
)
from parity.plan.catalog import Catalog
from parity.plan.nodes import Plan
from parity.runtime.project import PLAN_CACHE, Project
from parity.runtime.push import PushRouter, PushUnavailable
from parity.semantics.time import iso_micros, parse_iso
from parity.semantics.wire import from_json, to_json
from parity.server import metrics
from parity.server.audit import AuditLog, AuditUnavailable, hashed_keys
from parity.server.jobs import JobError, TrainingJobs
from parity.server.openapi import DOCUMENT
from parity.server.tokens import TokenStore

log = logging.getLogger("parity.server")
# Request ids unique across the workers and their restarts (pid, the time each is made, a counter),
# without a random draw per request: they join a trail record to its feature-log rows, they guard nothing.
_REQUEST_IDS = (f"{os.getpid():x}-{time.time_ns() // 1000:x}-{n:x}" for n in itertools.count())


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20
    max_entities: int = 1_000
    max_features: int = 500
    max_concurrent: int = 64  # requests in flight per worker; past it: 503 overloaded, at once
    body_timeout: float = 10.0  # seconds to send the body: a slow client is cut off, not waited for
    audit_flush_interval: float = 0.1  # group commit of the audit trail: what a crash can lose
    max_upload_bytes: int = 64 << 20  # a Parquet spine for a training set
    max_spine_rows: int = 10_000_000
    max_push_events: int = 10_000


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field, self.extra = status, code, message, field, extra or {}


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z), status_code=status,
                    media_type="application/json", headers=headers)


def _error(exc: ApiError) -> Response:
    body: dict[str, object] = {"code": exc.code, "message": exc.message}
    if exc.field is not None:
        body["field"] = exc.field
    body.update(exc.extra)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _json({"error": body}, exc.status, headers)


class Api:
    def __init__(self, project: Project, tokens: TokenStore, audit: AuditLog, limits: Limits,
                 jobs: TrainingJobs) -> None:
        self.project, self.tokens, self.audit, self.limits, self.jobs = project, tokens, audit, limits, jobs
        self._in_flight = 0
        self._shapes: dict[int, _Shape] = {}
        self.pushes = PushRouter(project)
        self._feature_log_seen: dict[str, int] = {}

    def _shape(self, plan: Plan) -> _Shape:
        """What a request's plan says about its wire and its audit record, derived once per plan
        (plans are cached by the project; each shape holds its plan, so the id stays its own)."""
        found = self._shapes.get(id(plan))
        if found is None or found.plan is not plan:
            if len(self._shapes) >= PLAN_CACHE:  # bounded like the plans themselves
                del self._shapes[next(iter(self._shapes))]
            found = self._shapes[id(plan)] = _Shape.of(self.project.catalog, plan)
        return found

    # -- plumbing --------------------------------------------------------------------------

    def _principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if header is None:
            raise ApiError(401, "unauthenticated", "no token: send Authorization: Bearer pty_…", "Authorization")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthenticated", "the Authorization header must be 'Bearer pty_…'", "Authorization")
        try:
            principal, token_id = self.tokens.authenticate(token.strip())
        except AuthenticationError as exc:
            raise ApiError(401, "unauthenticated", str(exc), "Authorization") from None
        request.state.who, request.state.principal = principal.name, principal
        request.state.audit["token"] = token_id
        return principal

    async def _bytes(self, request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise ApiError(413, "body_too_large", f"the body is limited to {limit:,} bytes")
        chunks, size = [], 0
        self._in_flight -= 1  # a client sending its body slowly holds a connection, not one of the request slots
        try:
            async with asyncio.timeout(self.limits.body_timeout):  # no task per request, as wait_for would make
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise ApiError(413, "body_too_large", f"the body is limited to {limit:,} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise ApiError(408, "body_timeout", f"the body did not arrive within {self.limits.body_timeout:g} s") from None
        except ClientDisconnect:
            raise ApiError(400, "client_disconnected", "the client went away before its body arrived") from None
        finally:
            self._in_flight += 1
        return b"".join(chunks)

    async def _body(self, request: Request) -> dict[str, Any]:
        raw = await self._bytes(request, self.limits.max_body_bytes)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "bad_json", f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", f"the body must be a JSON object, not {type(body).__name__}")
        return body

    def _guarded(self, action: str,
                 handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        pending, requests, latency, labels = metrics.PENDING, metrics.REQUESTS, metrics.LATENCY, (action,)

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            request.state.who, request.state.audit = "-", {}
            response = await answer(request)
            outcome = "ok" if response.status_code < 400 else getattr(request.state, "code", "error")
            # every request, refused ones too: who, what, about whom, under which versions, and how it ended
            try:
                self.audit.append(request.state.who, action, outcome, status=response.status_code,
                                  **request.state.audit)
            except AuditUnavailable as exc:  # a request that cannot be audited is not answered
                outcome, response = "audit_unavailable", _error(ApiError(503, "audit_unavailable", str(exc)))
            pending.count(requests, (action, outcome))
            pending.observe(latency, labels, time.perf_counter() - started)
            return response

        async def answer(request: Request) -> Response:
            if self._in_flight >= self.limits.max_concurrent:
                return self._refuse(request, ApiError(503, "overloaded", f"more than {self.limits.max_concurrent} "
                                                      "requests in flight; retry with backoff"))
            self._in_flight += 1
            try:
                return await handler(request)
            except ApiError as exc:
                return self._refuse(request, exc)
            except JobError as exc:
                return self._refuse(request, ApiError(exc.status, exc.code, exc.message))
            except AccessDenied as exc:
                return self._refuse(request, ApiError(403, "forbidden", str(exc), exc.field, {"denied": exc.denied}))
            except UnknownFeatureError as exc:
                return self._refuse(request, self._unknown(request, exc))
            except EntityKeyError as exc:
                return self._refuse(request, ApiError(400, "invalid_entity_key", str(exc), "entities"))
            except PushUnavailable as exc:
                return self._refuse(request, ApiError(503, "push_unavailable", str(exc)))
            except StoreError as exc:
                return self._refuse(request, ApiError(503, "store_unavailable", str(exc)))
            except ParityError as exc:
                return self._refuse(request, ApiError(400, "invalid_request", str(exc)))
            except Exception:  # a bug of ours: logged here, never shown (its message could hold a value)
                log.exception("%s %s failed", request.method, request.url.path)
                return self._refuse(request, ApiError(500, "internal", "the server failed; the error is in its log"))
            finally:
                self._in_flight -= 1

        return endpoint

    def flush_metrics(self) -> None:
        metrics.PENDING.flush()
        metrics.IN_FLIGHT.set(self._in_flight)
        feature_log = self.project.feature_log()
        if feature_log is not None:  # the log's running totals, as counters: what changed since the last flush
            stats, seen = feature_log.stats(), self._feature_log_seen
            for outcome in ("written", "dropped"):
                if stats[outcome] > seen.get(outcome, 0):
                    metrics.FEATURE_LOG.labels(outcome).inc(stats[outcome] - seen.get(outcome, 0))
            if stats["failed_flushes"] > seen.get("failed_flushes", 0):
                metrics.FEATURE_LOG_FAILURES.inc(stats["failed_flushes"] - seen.get("failed_flushes", 0))
            metrics.FEATURE_LOG_BUFFERED.set(stats["buffered"])
            self._feature_log_seen = stats

    def _unknown(self, request: Request, exc: UnknownFeatureError) -> ApiError:
        """An unknown feature, with suggestions drawn only from what this principal may request."""
        principal = getattr(request.state, "principal", None)
        if principal is None:
            return ApiError(400, "unknown_feature", f"unknown feature {exc.reference!r}", "features", {"suggestions": []})
        visible = [f"{e}.{n}" for e, n in self.project.access_policy().visible(principal, self.project.plan)]
        suggestions = difflib.get_close_matches(exc.reference, visible, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        return ApiError(400, "unknown_feature", f"unknown feature {exc.reference!r}{hint}", "features",
                        {"suggestions": suggestions})

    @staticmethod
    def _refuse(request: Request, exc: ApiError) -> Response:
        request.state.code = exc.code
        return _error(exc)

    def _features(self, value: object) -> list[str]:
        if not isinstance(value, list) or not value or not all(isinstance(f, str) for f in value):
            raise ApiError(400, "invalid_field", "features must be a non-empty list of feature names", "features")
        if len(value) > self.limits.max_features:
            raise ApiError(413, "too_many_features", f"at most {self.limits.max_features} features per request",
                           "features")
        return value

    # -- endpoints -------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        try:
            self.project.online_store()
        except ParityError as exc:
            return _error(ApiError(503, "not_ready", str(exc)))
        return _json({"status": "ready", "policy_version": self.project.access_policy().version})

    async def query(self, request: Request) -> Response:
        principal = self._principal(request)
        body = await self._body(request)
        unknown = sorted(set(body) - {"entities", "features", "now", "with_status"})
        if unknown:
            raise ApiError(400, "invalid_field", f"unknown field {unknown[0]!r}; expected entities, features, now, "
                           "with_status", unknown[0])
        features = self._features(body.get("features"))
        entities = body.get("entities")
        n = _entity_count(entities)
        if n > self.limits.max_entities:
            raise ApiError(413, "too_many_entities", f"{n:,} entities; at most {self.limits.max_entities:,} per "
                           "request", "entities")
        with_status = body.get("with_status", False)
        if not isinstance(with_status, bool):
            raise ApiError(400, "invalid_field", "with_status must be true or false", "with_status")
        now = _now(body.get("now"), "now")
        shape = self._shape(self.project.plan(features))
        request.state.audit.update(features=shape.canonical, entities=hashed_keys(self.audit, entities, shape.keys),
                                   now=body.get("now"), policy=self.project.access_policy().version,
                                   versions=shape.versions)
        entities = shape.read_keys(entities)
        request_id = next(_REQUEST_IDS)  # in the trail and, when sampled, the feature log: one request, two records
        request.state.audit["request"] = request_id
        result = await self.project.aquery(entities, features, now=now, with_status=with_status,
                                           principal=principal, request_id=request_id)
        metrics.PENDING.observe(metrics.ENTITIES, (), n)
        metrics.PENDING.observe(metrics.FEATURES, (), len(features))
        if result.details is not None:
            statuses: dict[str, int] = {}
            for row in result.details:
                for value in row.values():
                    statuses[value.status] = statuses.get(value.status, 0) + 1
            for status, count in statuses.items():
                metrics.PENDING.count(metrics.VALUES, (status,), count)
        payload: dict[str, object] = {"features": list(result.features), "dtypes": shape.dtypes,
                                      "rows": to_json(result.rows)}
        if result.details is not None:
            payload["details"] = [{ref: {"status": v.status, "event_time": v.event_time, "error": v.error}
                                   for ref, v in row.items()} for row in result.details]
        return _json(payload, headers={"X-Request-Id": request_id})

    async def submit_training_set(self, request: Request) -> Response:
        principal = self._principal(request)
        if request.headers.get("content-type", "").split(";")[0].strip() == PARQUET:
            params = request.query_params
            features: object = [f for value in params.getlist("features") for f in value.split(",") if f]
            timestamp_column = params.get("timestamp_column", "timestamp")
            with_status = params.get("with_status", "false").lower() == "true"
            spine = _parquet_spine(await self._bytes(request, self.limits.max_upload_bytes))
        else:
            body = await self._body(request)
            unknown = sorted(set(body) - {"spine", "features", "timestamp_column", "with_status"})
            if unknown:
                raise ApiError(400, "invalid_field", f"unknown field {unknown[0]!r}; expected spine, features, "
                               "timestamp_column, with_status", unknown[0])
            features = body.get("features")
            timestamp_column = body.get("timestamp_column", "timestamp")
            with_status = body.get("with_status", False)
            if not isinstance(timestamp_column, str) or not isinstance(with_status, bool):
                raise ApiError(400, "invalid_field", "timestamp_column must be a column name and with_status true or "
                               "false", "timestamp_column" if not isinstance(timestamp_column, str) else "with_status")
            spine = _json_spine(body.get("spine"), timestamp_column)
        features = self._features(features)
        if spine.num_rows > self.limits.max_spine_rows:
            raise ApiError(413, "too_many_rows", f"{spine.num_rows:,} spine rows; at most "
                           f"{self.limits.max_spine_rows:,}", "spine")
        plan = self.project.plan(features)
        self.project.access_policy().check(principal, plan)  # refused now, not in the job
        shape = self._shape(plan)
        request.state.audit.update(features=shape.canonical, spine_rows=spine.num_rows,
                                   policy=self.project.access_policy().version, versions=shape.versions)
        job = self.jobs.submit(principal, spine, features, timestamp_column, with_status)
        request.state.audit["job"] = job["id"]
        return _json(job, 202, {"Location": f"/v1/training-sets/{job['id']}"})

    async def training_set_status(self, request: Request) -> Response:
        principal = self._principal(request)
        job_id = request.path_params["job"]
        request.state.audit["job"] = job_id
        job = self.jobs.status(principal, job_id)
        self.project.access_policy().check(principal, self.project.plan(job["features"]))  # as granted now
        return _json(job)

    async def training_set_result(self, request: Request) -> Response:
        principal = self._principal(request)
        job_id = request.path_params["job"]
        request.state.audit["job"] = job_id
        job = self.jobs.status(principal, job_id)
        # the same name with other roles (another token), or roles changed since: decided again now
        self.project.access_policy().check(principal, self.project.plan(job["features"]))
        return FileResponse(self.jobs.result_path(principal, job_id), media_type=PARQUET)

    async def push(self, request: Request) -> Response:
        """Events into a stream source: answered after the commit that logged them, all or none."""
        principal = self._principal(request)
        source = request.path_params["source"]
        request.state.audit["source"] = source
        self.project.access_policy().check_push(principal, source)  # unknown and ungranted alike: no oracle
        body = await self._body(request)
        unknown = sorted(set(body) - {"events"})
        if unknown:
            raise ApiError(400, "invalid_field", f"unknown field {unknown[0]!r}; expected events", unknown[0])
        events = body.get("events")
        if not isinstance(events, list) or not events:
            raise ApiError(400, "invalid_field", "events must be a non-empty list of event objects", "events")
        if len(events) > self.limits.max_push_events:
            raise ApiError(413, "too_many_events", f"{len(events):,} events; at most {self.limits.max_push_events:,} "
                           "per push", "events")
        request.state.audit["events"] = len(events)
        report = await self.pushes.push(source, events)
        if report.refused:
            errors = [{"index": i, "reason": reason} for i, reason in report.errors]
            first = errors[0]
            raise ApiError(422, "invalid_events", f"event #{first['index']}: {first['reason']} (nothing of this push "
                           f"was written; {len(errors)} event(s) refused)", "events", {"errors": errors[:100]})
        request.state.audit.update(accepted=report.accepted, duplicates=report.duplicates,
                                   log_seq=None if report.first_seq is None else [report.first_seq, report.last_seq])
        metrics.PENDING.count(metrics.PUSHED, (source, "accepted"), report.accepted)
        metrics.PENDING.count(metrics.PUSHED, (source, "duplicate"), report.duplicates)
        return _json({"accepted": report.accepted, "duplicates": report.duplicates,
                      "late_applied": report.late_applied, "warned": report.warned, "first_seq": report.first_seq,
                      "last_seq": report.last_seq})

    async def metrics(self, request: Request) -> Response:
        self.project.access_policy().check_metrics(self._principal(request))
        self.flush_metrics()  # this worker's own counts are current; the others' at most one flush late
        return Response(metrics.exposition(self.project.settings.resolve(".parity"), self.project.monitor_store()),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def monitor(self, request: Request) -> Response:
        """Monitor results as a time series, for roles that may read metrics, of the features the
        principal may see (a point's detail can name values)."""
        principal = self._principal(request)
        self.project.access_policy().check_metrics(principal)
        params = request.query_params
        unknown = sorted(set(params) - {"metric", "feature", "since", "until", "limit"})
        if unknown:
            raise ApiError(400, "invalid_field", f"unknown parameter {unknown[0]!r}; expected metric, feature, since, "
                           "until, limit", unknown[0])
        bounds = {}
        for name in ("since", "until"):
            text = params.get(name)
            if text is not None:
                try:
                    value = parse_iso(text) if len(text) <= 64 else None
                except ValueError:
                    value = None
                if not isinstance(value, dt.datetime) or value.tzinfo is None:
                    raise ApiError(400, "invalid_field", f"{name}: give an ISO-8601 time with a zone", name)
                bounds[name] = int(value.timestamp() * 1_000_000)
        limit_text = params.get("limit", "1000")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 10_000:
            raise ApiError(400, "invalid_field", "limit: a whole number from 1 to 10000", "limit")
        visible = {str(f["feature"]) for f in self.project.catalog_for(principal)}
        views = {f"view {name}" for name, view in self.project.catalog.views.items()  # freshness is a view's
                 if any(f"{view.entity.name}.{f.name}" in visible for f in view.features)}
        points = await asyncio.to_thread(self.project.monitor_store().points, metric=params.get("metric"),
                                         feature=params.get("feature"), since_us=bounds.get("since"),
                                         until_us=bounds.get("until"))
        shown = [p for p in points if p.feature in visible or p.feature in views][-int(limit_text):]
        return _json({"points": [{"metric": p.metric, "feature": p.feature, "version": p.version,
                                  "window_start": iso_micros(p.window_start_us),
                                  "window_end": iso_micros(p.window_end_us), "value": _finite(p.value),
                                  "threshold": _finite(p.threshold), "status": p.status}
                                 for p in shown]})

    async def catalog(self, request: Request) -> Response:
        principal = self._principal(request)
        features = self.project.catalog_for(principal)
        return _json({"features": features, **self.project.entities_and_sources_for(features, principal),
                      "policy_version": self.project.access_policy().version})


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


PARQUET = "application/vnd.apache.parquet"


def _parquet_spine(raw: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as exc:
        raise ApiError(400, "invalid_field", f"the body is not a Parquet file: {one_line(str(exc))}", "spine") from None


def _json_spine(spine: object, timestamp_column: str) -> Any:
    """``{"column": [values]}`` as a table; the time column's ISO-8601 texts (with a zone) as UTC
    timestamps — the spine then goes through the same checks as any other (``offline.spine``)."""
    import pyarrow as pa

    if not isinstance(spine, dict) or not spine or not all(isinstance(v, list) for v in spine.values()):
        raise ApiError(400, "invalid_field", "spine must be an object of columns: {\"column\": [values], ...}", "spine")
    if timestamp_column not in spine:
        raise ApiError(400, "invalid_field", f"the spine has no {timestamp_column!r} column (timestamp_column)", "spine")
    columns: dict[str, Any] = {}
    for name, values in spine.items():
        if name == timestamp_column:
            times = [None if v is None else _now(v, "spine") for v in values]
            columns[name] = pa.array(times, pa.timestamp("us", "UTC"))
            continue
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowException, OverflowError) as exc:
            raise ApiError(400, "invalid_field", f"spine column {name!r}: {one_line(str(exc))}", "spine") from None
    try:
        return pa.table(columns)
    except pa.ArrowException as exc:
        raise ApiError(400, "invalid_field", f"spine: {one_line(str(exc))}", "spine") from None


@dataclass(frozen=True)
class _Shape:
    """Per plan: the features as the catalog names them, their versions and wire dtypes, the keys
    the plan reads (what the trail hashes), and the keys whose wire form is not their value."""

    plan: Plan
    canonical: list[str]
    versions: dict[str, str]
    dtypes: dict[str, str]
    keys: list[str]
    typed_keys: dict[str, str]

    @classmethod
    def of(cls, catalog: Catalog, plan: Plan) -> _Shape:
        from parity.registry.versions import Versions

        versions = Versions(catalog)
        refs = [ref for ref, _ in plan.outputs]
        defs = [catalog.feature_at(catalog.parse(ref)) for ref in refs]
        typed = {k: repr(d) for root, _ in plan.roots for k, d in catalog.entities[root].keys.items()
                 if d.name in ("Timestamp", "Date", "Float64")}
        return cls(plan, [catalog.parse(ref).text for ref in refs], {r: versions.version(fd) for r, fd in zip(refs, defs)},
                   {r: repr(fd.dtype) for r, fd in zip(refs, defs)}, [k for _, ks in plan.roots for k in ks], typed)

    def read_keys(self, entities: Any) -> Any:
        """Entity keys as JSON carries them, read back by their dtype (``semantics.wire``): a
        Timestamp or Date key is ISO text, a Float64 key may be "NaN". Others pass unchanged."""
        typed = self.typed_keys
        if not typed:
            return entities

        def read(key: str, value: object) -> object:
            try:
                return from_json(value, typed[key]) if key in typed else value
            except ValueError:
                raise ApiError(400, "invalid_entity_key", f"entity key {key!r}: {str(value)[:64]!r} is not a "
                               f"{typed[key]} on the wire (ISO-8601 text for times and dates)", "entities") from None

        if isinstance(entities, dict):
            return {k: [read(k, x) for x in v] if isinstance(v, list) else read(k, v) for k, v in entities.items()}
        return [{k: read(k, v) for k, v in row.items()} if isinstance(row, dict) else row for row in entities]


def _entity_count(entities: object) -> int:
    if isinstance(entities, dict):
        lengths = [len(v) for v in entities.values() if isinstance(v, list)]
        return max(lengths, default=1)
    if isinstance(entities, list):
        return len(entities)
    raise ApiError(400, "invalid_field", "entities must be an object of key columns (or of one entity's keys) or a "
                   "list of key objects", "entities")


def _now(value: object, field: str) -> dt.datetime | None:
    """An ISO-8601 time with a zone from the request (``field`` names where, for the error)."""
    if value is None:
        return None
    try:
        parsed = parse_iso(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dt.datetime) and parsed.tzinfo is not None:
        try:
            parsed.astimezone(dt.UTC)
            return parsed
        except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first representable instant
            pass
    raise ApiError(400, "invalid_field", f"{field}: times must be ISO-8601 with a zone (e.g. 2026-01-31T12:00:00Z) "
                   f"within years 1-9999 in UTC, got {str(value)[:64]!r}", field)


def create_app(project: Project, tokens: TokenStore, audit: AuditLog, limits: Limits | None = None) -> Starlette:
    jobs = TrainingJobs(project.settings.resolve(".parity"), project.settings.root)
    monitors = None
    if project.settings.monitor_interval_seconds is not None:
        from parity.runtime.secrets import resolve as resolve_secret
        from parity.server.monitors import Monitors

        webhook = None if project.settings.monitor_webhook is None else resolve_secret(
            project.settings.monitor_webhook, root=project.settings.root, what="monitor.webhook")
        monitors = Monitors(project.settings.root, project.settings.monitor_interval_seconds,
                            project.settings.monitor_bucket, webhook)
    api = Api(project, tokens, audit, limits or Limits(), jobs)

    async def flusher() -> None:
        while True:
            await asyncio.sleep(api.limits.audit_flush_interval)
            try:
                api.flush_metrics()
            except Exception:  # metrics are informative: said in the log, the server goes on
                log.exception("the metrics could not be written")
            try:
                started = time.perf_counter()
                written = await asyncio.to_thread(audit.flush)
                if written:
                    metrics.AUDIT_RECORDS.inc(written)
                    metrics.AUDIT_FLUSH.observe(time.perf_counter() - started)
            except Exception:  # the flusher never dies: said in the log, the batch kept, retried
                metrics.AUDIT_FAILURES.inc()
                log.exception("the audit trail could not be written; retrying")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        project.access_policy()  # compiled before the first request, not during it
        project.observe_steps(metrics.StepMetrics())
        import parity.online.engine  # noqa: F401 - the engine's imports (~0.2 s) are not the first request's

        project.online_store()
        for source in project.catalog.stream_sources():  # one worker becomes each push-fed source's writer
            try:
                await api.pushes.try_to_write(source)
            except (ParityError, OSError):  # the store down during its recovery: the first push tries again
                log.warning("could not take the writer of stream source %r yet", source, exc_info=True)
        task = asyncio.create_task(flusher())
        scheduled = None
        if monitors is not None:
            scheduled = asyncio.create_task(monitors.loop())
        # What startup made (modules, the catalog, plans, the store's caches) lives as long as the
        # worker: frozen out of the collector's sight, so a full collection scans only what requests
        # made — measured: gen-2 pauses of 28-51 ms every few seconds became the p99 otherwise.
        gc.freeze()
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if scheduled is not None and monitors is not None:
            scheduled.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduled
            monitors.close()
        await api.pushes.close()
        await asyncio.to_thread(jobs.close)
        audit.close()
        project.close()
        tokens.close()

    document = orjson.dumps(DOCUMENT)

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    routes = [
        Route("/v1/health", api.health, methods=["GET"]),
        Route("/v1/ready", api.ready, methods=["GET"]),
        Route("/v1/query", api._guarded("query", api.query), methods=["POST"]),
        Route("/v1/catalog", api._guarded("catalog", api.catalog), methods=["GET"]),
        Route("/v1/openapi.json", openapi, methods=["GET"]),
        Route("/v1/metrics", api._guarded("metrics", api.metrics), methods=["GET"]),
        Route("/v1/monitor", api._guarded("monitor", api.monitor), methods=["GET"]),
        Route("/v1/push/{source}", api._guarded("push", api.push), methods=["POST"]),
        Route("/v1/training-sets", api._guarded("training_set", api.submit_training_set), methods=["POST"]),
        Route("/v1/training-sets/{job}", api._guarded("training_set.status", api.training_set_status),
              methods=["GET"]),
        Route("/v1/training-sets/{job}/result", api._guarded("training_set.result", api.training_set_result),
              methods=["GET"]),
    ]
    async def http_error(request: Request, exc: Exception) -> Response:  # unknown paths and methods, as JSON too
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return _error(ApiError(status, code, f"{request.method} {request.url.path}: "
                               f"{exc.detail if isinstance(exc, HTTPException) else 'failed'}"))

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


def app_from_environment() -> Starlette:
    """The factory each uvicorn worker calls (``parity serve`` sets PARITY_PROJECT)."""
    project = Project.load(os.environ.get("PARITY_PROJECT", "."))
    return create_app(project, TokenStore.of(project), AuditLog.of(project))
