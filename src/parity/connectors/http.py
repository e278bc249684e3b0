"""The async HTTP client resolvers receive as their ``http`` parameter (httpx underneath).

Timeouts, retries, the concurrency limit and the circuit breaker are the resolver's call policy
(``online.guard``); this client adds connection pooling and JSON helpers, and raises on HTTP
errors and on bodies that are not the JSON they claim to be. Needs ``pip install "parity[http]"``.
"""

from __future__ import annotations

from typing import Any

from parity.errors import DataError, MissingExtraError


class HttpClient:
    def __init__(self, *, max_connections: int = 100) -> None:
        try:
            import httpx
        except ImportError:
            raise MissingExtraError("httpx", "http") from None
        self._httpx = httpx
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=httpx.Timeout(30.0),
        )

    async def get_json(self, url: str, *, params: dict[str, Any] | None = None,
                       headers: dict[str, str] | None = None) -> Any:
        response = await self._client.get(url, params=params, headers=headers)
        return self._json(response)

    async def post_json(self, url: str, body: Any, *, headers: dict[str, str] | None = None) -> Any:
        response = await self._client.post(url, json=body, headers=headers)
        return self._json(response)

    def _json(self, response: Any) -> Any:
        response.raise_for_status()
        try:
            return response.json()
        except ValueError:
            raise DataError(f"{response.request.method} {response.request.url.copy_with(query=None)} returned a body "
                            f"that is not JSON ({response.text[:80]!r})") from None

    async def aclose(self) -> None:
        await self._client.aclose()
