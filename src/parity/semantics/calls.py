"""Calling something that may be slow or down — the same policy on both paths.

An async resolver (and a request-time source lookup) is called under its ``CallPolicy``: an overall
``timeout`` that counts everything — the wait for a concurrency slot, every attempt and the pauses
between them — retries with exponential backoff (idempotent calls only), at most ``concurrency``
calls in flight, and a circuit breaker. A call that fails under the policy yields the feature's
declared default with status "error", offline exactly as online (``offline.engine`` records the
rows that fell back).

Online, one ``Guard`` per resolver or source lives as long as the process, so its breaker
remembers. A training set uses fresh guards without the breaker: it protects live traffic, and
offline it would make which rows fall back depend on timing rather than on each call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from parity.define.resolvers import CallPolicy
from parity.errors import DataError

T = TypeVar("T")


class CircuitOpenError(Exception):
    """The dependency failed too often recently; calls fail fast until the breaker resets."""


class CallTimeoutError(TimeoutError):
    """The call did not finish within its policy's timeout (the message says what was waited for)."""


class Guard:
    def __init__(self, name: str, policy: CallPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.policy = policy
        self.clock = clock
        self._limit = asyncio.Semaphore(policy.concurrency) if policy.concurrency else None
        self._failures = 0
        self._opened_at: float | None = None
        self._trial: object | None = None  # the token of the half-open trial call in flight

    @property
    def state(self) -> str:
        breaker = self.policy.circuit_breaker
        if self._opened_at is None or breaker is None:
            return "closed"
        return "half-open" if self.clock() - self._opened_at >= breaker.reset_after else "open"

    def _admit(self, token: object) -> bool:
        """Whether a call may go through; in half-open state only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and self._trial is None:
            self._trial = token
            return True
        return False

    def _record(self, ok: bool) -> None:
        breaker = self.policy.circuit_breaker
        if ok:
            self._failures, self._opened_at = 0, None
            return
        self._failures += 1
        if breaker is not None and (self._failures >= breaker.failures or self._opened_at is not None):
            self._opened_at = self.clock()

    async def call(self, make: Callable[[], Awaitable[T]], cause: Callable[[], str | None] | None = None) -> T:
        """Run ``make()`` under the policy. Raises the last error, ``CallTimeoutError`` or
        ``CircuitOpenError``. ``cause`` may explain a timeout (e.g. a pool's last connection error)."""
        token = object()
        if self.policy.circuit_breaker is not None and not self._admit(token):
            raise CircuitOpenError(f"{self.name}: circuit open after {self._failures} consecutive failures")
        deadline = None if self.policy.timeout is None else self.clock() + self.policy.timeout
        try:
            if self._limit is None:
                return await self._attempts(make, deadline, cause)
            try:
                await asyncio.wait_for(self._limit.acquire(), self._remaining(deadline))
            except TimeoutError:  # the dependency did not fail: the breaker does not count it
                raise self._timeout("waiting for one of its concurrency slots", cause) from None
            try:
                return await self._attempts(make, deadline, cause)
            finally:
                self._limit.release()
        finally:
            if self._trial is token:  # finished, failed or cancelled: the next call may try again
                self._trial = None

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(deadline - self.clock(), 0.0)

    def _timeout(self, what: str, cause: Callable[[], str | None] | None) -> CallTimeoutError:
        why = cause() if cause is not None else None
        return CallTimeoutError(f"{self.name}: timed out after {self.policy.timeout}s {what}"
                                + (f" (last problem: {why})" if why else ""))

    async def _attempts(self, make: Callable[[], Awaitable[T]], deadline: float | None,
                        cause: Callable[[], str | None] | None) -> T:
        policy = self.policy
        attempt = 0
        while True:
            remaining = self._remaining(deadline)
            try:
                if remaining is not None and remaining <= 0:
                    raise TimeoutError
                result = await asyncio.wait_for(make(), remaining) if remaining is not None else await make()
            except Exception as exc:
                retry = policy.idempotent and attempt < policy.retries and not isinstance(exc, CircuitOpenError)
                pause = policy.backoff * (2**attempt)
                if retry and (deadline is None or self.clock() + pause < deadline):
                    attempt += 1
                    await asyncio.sleep(pause)
                    continue
                self._record(False)
                ours = deadline is not None and self.clock() >= deadline  # the callee's own TimeoutError stays its own
                if isinstance(exc, TimeoutError) and not isinstance(exc, CallTimeoutError) and ours:
                    raise self._timeout(f"({attempt + 1} attempt{'s' if attempt else ''})", cause) from None
                raise
            self._record(True)
            return result


def failure(resolver: str, exc: BaseException) -> str:
    """The error status text of a resolver call that failed, on both paths."""
    return f"resolver {resolver!r} raised {type(exc).__name__}: {exc}"


def public(error: str) -> str:
    """An error text as a principal (not the project's owner) sees it: who failed and how, not the
    detail — an exception's message can quote an input the principal may only use inside a plan
    ("Invalid isoformat string: '17/05/1990'"). The owner's logs and the Python API keep it whole."""
    head, sep, _ = error.partition(": ")
    return head + ("; the detail is in the server's log" if sep else "")


def outputs_of(result: object, n: int) -> tuple[object, ...]:
    """A resolver's result as one value per output (None stands for all-null)."""
    if n == 1:
        return (result,)
    if result is None:
        return (None,) * n
    if not isinstance(result, tuple) or len(result) != n:
        raise DataError(f"returned {result!r}; it declares {n} outputs, so return a {n}-tuple")
    return result
