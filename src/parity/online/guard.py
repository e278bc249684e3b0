"""Calling something that may be slow or down: an overall timeout, retries with exponential
backoff (idempotent calls only), a concurrency limit and a circuit breaker.

One ``Guard`` per resolver or source, living as long as the process, so the breaker remembers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from parity.define.resolvers import CallPolicy

T = TypeVar("T")


class CircuitOpenError(Exception):
    """The dependency failed too often recently; calls fail fast until the breaker resets."""


class Guard:
    def __init__(self, name: str, policy: CallPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.policy = policy
        self.clock = clock
        self._limit = asyncio.Semaphore(policy.concurrency) if policy.concurrency else None
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        breaker = self.policy.circuit_breaker
        assert breaker is not None
        return "half-open" if self.clock() - self._opened_at >= breaker.reset_after else "open"

    def _admit(self) -> bool:
        """Whether a call may go through; in half-open state only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def _record(self, ok: bool) -> None:
        self._trial_running = False
        breaker = self.policy.circuit_breaker
        if ok:
            self._failures, self._opened_at = 0, None
            return
        self._failures += 1
        if breaker is not None and (self._failures >= breaker.failures or self._opened_at is not None):
            self._opened_at = self.clock()

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` under the policy. Raises the last error, ``TimeoutError`` or ``CircuitOpenError``."""
        if self.policy.circuit_breaker is not None and not self._admit():
            raise CircuitOpenError(f"{self.name}: circuit open after {self._failures} consecutive failures")
        if self._limit is None:
            return await self._attempts(make)
        async with self._limit:
            return await self._attempts(make)

    async def _attempts(self, make: Callable[[], Awaitable[T]]) -> T:
        policy = self.policy
        deadline = None if policy.timeout is None else self.clock() + policy.timeout
        attempt = 0
        while True:
            remaining = None if deadline is None else deadline - self.clock()
            try:
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{self.name}: no time left within {policy.timeout}s")
                result = await asyncio.wait_for(make(), remaining) if remaining is not None else await make()
            except Exception as exc:
                retry = policy.idempotent and attempt < policy.retries and not isinstance(exc, CircuitOpenError)
                pause = policy.backoff * (2**attempt)
                if retry and (deadline is None or self.clock() + pause < deadline):
                    attempt += 1
                    await asyncio.sleep(pause)
                    continue
                self._record(False)
                if isinstance(exc, asyncio.TimeoutError | TimeoutError):
                    raise TimeoutError(f"{self.name}: timed out after {policy.timeout}s") from None
                raise
            self._record(True)
            return result
