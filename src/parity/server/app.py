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
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parity.define.access import Principal
from parity.errors import (
    AccessDenied,
    AuthenticationError,
    DataError,
    DefinitionError,
    EntityKeyError,
    ParityError,
    StoreError,
    UnknownFeatureError,
)
from parity.runtime.project import Project
from parity.semantics.time import parse_iso
from parity.server.tokens import TokenStore

log = logging.getLogger("parity.server")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20
    max_entities: int = 1_000
    max_features: int = 500
    max_concurrent: int = 64  # requests in flight per worker; past it: 503 overloaded, at once
    body_timeout: float = 10.0  # seconds to send the body: a slow client is cut off, not waited for


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
    def __init__(self, project: Project, tokens: TokenStore, limits: Limits) -> None:
        self.project, self.tokens, self.limits = project, tokens, limits
        self._in_flight = 0

    # -- plumbing --------------------------------------------------------------------------

    def _principal(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if header is None:
            raise ApiError(401, "unauthenticated", "no token: send Authorization: Bearer pty_…", "Authorization")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthenticated", "the Authorization header must be 'Bearer pty_…'", "Authorization")
        try:
            return self.tokens.authenticate(token.strip())[0]
        except AuthenticationError as exc:
            raise ApiError(401, "unauthenticated", str(exc), "Authorization") from None

    async def _body(self, request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limits.max_body_bytes):
            raise ApiError(413, "body_too_large", f"the body is limited to {self.limits.max_body_bytes:,} bytes")
        chunks, size = [], 0

        async def read() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.limits.max_body_bytes:
                    raise ApiError(413, "body_too_large", f"the body is limited to {self.limits.max_body_bytes:,} bytes")
                chunks.append(chunk)

        try:
            await asyncio.wait_for(read(), self.limits.body_timeout)
        except TimeoutError:
            raise ApiError(408, "body_timeout", f"the body did not arrive within {self.limits.body_timeout:g} s") from None
        try:
            body = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "bad_json", f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", f"the body must be a JSON object, not {type(body).__name__}")
        return body

    def _guarded(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if self._in_flight >= self.limits.max_concurrent:
                return _error(ApiError(503, "overloaded", f"more than {self.limits.max_concurrent} requests in flight; "
                                       "retry with backoff"))
            self._in_flight += 1
            try:
                return await handler(request)
            except ApiError as exc:
                return _error(exc)
            except AccessDenied as exc:
                return _error(ApiError(403, "forbidden", str(exc), "features", {"denied": exc.denied}))
            except UnknownFeatureError as exc:
                return _error(ApiError(400, "unknown_feature", str(exc), "features",
                                       {"suggestions": exc.suggestions}))
            except EntityKeyError as exc:
                return _error(ApiError(400, "invalid_entity_key", str(exc), "entities"))
            except StoreError as exc:
                return _error(ApiError(503, "store_unavailable", str(exc)))
            except (DataError, DefinitionError) as exc:
                return _error(ApiError(400, "invalid_request", str(exc)))
            except ParityError as exc:
                return _error(ApiError(400, "invalid_request", str(exc)))
            except Exception:  # a bug of ours: logged here, never shown (its message could hold a value)
                log.exception("%s %s failed", request.method, request.url.path)
                return _error(ApiError(500, "internal", "the server failed; the error is in its log"))
            finally:
                self._in_flight -= 1

        return endpoint

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
        features = body.get("features")
        if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
            raise ApiError(400, "invalid_field", "features must be a non-empty list of feature names", "features")
        if len(features) > self.limits.max_features:
            raise ApiError(413, "too_many_features", f"at most {self.limits.max_features} features per request",
                           "features")
        entities = body.get("entities")
        n = _entity_count(entities)
        if n > self.limits.max_entities:
            raise ApiError(413, "too_many_entities", f"{n:,} entities; at most {self.limits.max_entities:,} per "
                           "request", "entities")
        with_status = body.get("with_status", False)
        if not isinstance(with_status, bool):
            raise ApiError(400, "invalid_field", "with_status must be true or false", "with_status")
        now = _now(body.get("now"))
        result = await self.project.aquery(entities, features, now=now, with_status=with_status,  # type: ignore[arg-type]
                                           principal=principal)
        payload: dict[str, object] = {"features": list(result.features), "rows": result.rows}
        if result.details is not None:
            payload["details"] = [{ref: {"status": v.status, "event_time": v.event_time, "error": v.error}
                                   for ref, v in row.items()} for row in result.details]
        return _json(payload)

    async def catalog(self, request: Request) -> Response:
        principal = self._principal(request)
        return _json({"features": self.project.catalog_for(principal),
                      "policy_version": self.project.access_policy().version})


def _entity_count(entities: object) -> int:
    if isinstance(entities, dict):
        lengths = [len(v) for v in entities.values() if isinstance(v, list)]
        return max(lengths, default=1)
    if isinstance(entities, list):
        return len(entities)
    raise ApiError(400, "invalid_field", "entities must be an object of key columns (or of one entity's keys) or a "
                   "list of key objects", "entities")


def _now(value: object) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = parse_iso(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dt.datetime) or parsed.tzinfo is None:
        raise ApiError(400, "invalid_field", f"now must be an ISO-8601 time with a zone (e.g. 2026-01-31T12:00:00Z), "
                       f"got {value!r}", "now")
    return parsed


def create_app(project: Project, tokens: TokenStore, limits: Limits | None = None) -> Starlette:
    api = Api(project, tokens, limits or Limits())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        project.access_policy()  # compiled before the first request, not during it
        yield
        project.close()
        tokens.close()

    routes = [
        Route("/v1/health", api.health, methods=["GET"]),
        Route("/v1/ready", api.ready, methods=["GET"]),
        Route("/v1/query", api._guarded(api.query), methods=["POST"]),
        Route("/v1/catalog", api._guarded(api.catalog), methods=["GET"]),
    ]
    async def http_error(request: Request, exc: Exception) -> Response:  # unknown paths and methods, as JSON too
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        return _error(ApiError(status, code, f"{request.method} {request.url.path}: "
                               f"{exc.detail if isinstance(exc, HTTPException) else 'failed'}"))

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


def tokens_path(project: Project) -> str:
    return project.settings.resolve(os.environ.get("PARITY_TOKENS_PATH", ".parity/tokens.db"))


def app_from_environment() -> Starlette:
    """The factory each uvicorn worker calls (``parity serve`` sets PARITY_PROJECT)."""
    project = Project.load(os.environ.get("PARITY_PROJECT", "."))
    return create_app(project, TokenStore(tokens_path(project)))
