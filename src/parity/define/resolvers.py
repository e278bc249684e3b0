"""Python resolvers: functions whose typed parameters are other features.

>>> @resolver(entity=user, outputs=Feature("account_age_days", Float64))
... def account_age_days(signup_at: datetime | None, now: datetime) -> float | None:
...     return None if signup_at is None else (now - signup_at).total_seconds() / 86400

A parameter named after a feature of the same entity takes that feature; ``Annotated[float,
"user.avg_amount"]`` follows relationships (relative to the resolver's entity); a parameter
named ``now`` takes the query time (the spine row's timestamp offline, the request time online).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from parity.define import dtypes
from parity.define.dtypes import DType
from parity.define.entities import Entity
from parity.define.features import Feature
from parity.define.location import caller_location
from parity.errors import DefinitionError, SignatureError

NOW = "now"
HTTP = "http"


@dataclass(frozen=True)
class CircuitBreaker:
    """Stop calling a failing dependency: after ``failures`` consecutive failures, fail fast for
    ``reset_after`` seconds, then let one trial call through (success closes the circuit)."""

    failures: int = 5
    reset_after: float = 30.0


@dataclass(frozen=True)
class CallPolicy:
    """How an async resolver is called online: an overall ``timeout`` (seconds, retries included),
    ``retries`` with exponential ``backoff`` (only when ``idempotent``), at most ``concurrency``
    calls in flight, and an optional circuit breaker."""

    timeout: float | None = None
    retries: int = 0
    backoff: float = 0.05
    idempotent: bool = True
    concurrency: int | None = None
    circuit_breaker: CircuitBreaker | None = None


@dataclass(frozen=True)
class ResolverInput:
    param: str
    path: str  # relative to the resolver's entity: "amount" or "user.account_age_days"
    dtype: DType | None  # from the annotation; None when not annotated


@dataclass(frozen=True, eq=False)
class Resolver:
    name: str
    fn: Callable[..., object]
    entity: Entity
    outputs: tuple[Feature, ...]
    inputs: tuple[ResolverInput, ...]
    wants_now: bool
    wants_http: bool
    is_async: bool
    policy: CallPolicy
    source_code: str
    location: str

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Resolver({self.name!r})"


def _function_location(fn: Callable[..., object]) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)


def resolver(
    *,
    entity: Entity,
    outputs: Feature | Sequence[Feature],
    timeout: float | None = None,
    retries: int = 0,
    backoff: float = 0.05,
    idempotent: bool = True,
    concurrency: int | None = None,
    circuit_breaker: CircuitBreaker | None = None,
) -> Callable[[Callable[..., object]], Resolver]:
    """Turn a function into a resolver of ``entity`` producing ``outputs``.

    With several outputs the function returns a tuple in the same order. A parameter named
    ``http`` receives parity's shared async HTTP client (``pip install "parity[http]"``); the call
    policy (timeout, retries, concurrency, circuit breaker) applies to async resolvers online.
    """
    outs = (outputs,) if isinstance(outputs, Feature) else tuple(outputs)
    policy = CallPolicy(timeout, retries, backoff, idempotent, concurrency, circuit_breaker)
    if retries < 0 or (timeout is not None and timeout <= 0) or (concurrency is not None and concurrency < 1):
        raise DefinitionError("resolver policy: retries ≥ 0, timeout > 0 and concurrency ≥ 1 are required",
                              location=caller_location())

    def wrap(fn: Callable[..., object]) -> Resolver:
        location = _function_location(fn)
        if not outs:
            raise DefinitionError(f"resolver {fn.__name__!r} declares no outputs", location=location)
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as exc:  # a NameError in an annotation, typically
            raise SignatureError(
                f"resolver {fn.__name__!r}: cannot read its annotations ({exc})", location=location
            ) from exc
        inputs: list[ResolverInput] = []
        wants_now = False
        wants_http = False
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise SignatureError(
                    f"resolver {fn.__name__!r}: *args/**kwargs cannot name features; list each input",
                    location=location,
                )
            if param.name == NOW:
                wants_now = True
                continue
            if param.name == HTTP:
                wants_http = True
                continue
            annotation = hints.get(param.name)
            path = param.name
            if typing.get_origin(annotation) is typing.Annotated:
                refs = [m for m in typing.get_args(annotation)[1:] if isinstance(m, str)]
                if refs:
                    path = refs[0]
            try:
                dtype, _ = dtypes.from_annotation(annotation)
            except TypeError as exc:
                raise SignatureError(
                    f"resolver {fn.__name__!r}, parameter {param.name!r}: {exc}", location=location
                ) from None
            inputs.append(ResolverInput(param.name, path, dtype))
        _check_return(fn.__name__, hints.get("return"), outs, location)
        if wants_http and not inspect.iscoroutinefunction(fn):
            raise SignatureError(f"resolver {fn.__name__!r} takes 'http', so it must be 'async def'", location=location)
        try:
            source_code = inspect.getsource(fn)
        except (OSError, TypeError):
            source_code = repr(getattr(fn, "__code__", fn))
        return Resolver(
            name=fn.__name__,
            fn=fn,
            entity=entity,
            outputs=outs,
            inputs=tuple(inputs),
            wants_now=wants_now,
            wants_http=wants_http,
            is_async=inspect.iscoroutinefunction(fn),
            policy=policy,
            source_code=source_code,
            location=location,
        )

    return wrap


def _check_return(name: str, annotation: object, outs: tuple[Feature, ...], location: str) -> None:
    if annotation is None:
        return
    if len(outs) > 1:
        if typing.get_origin(annotation) is not tuple:
            raise SignatureError(
                f"resolver {name!r} has {len(outs)} outputs, so it must return tuple[...] of their types",
                location=location,
            )
        parts = typing.get_args(annotation)
        if len(parts) != len(outs):
            raise SignatureError(
                f"resolver {name!r} returns a {len(parts)}-tuple for {len(outs)} outputs", location=location
            )
    else:
        parts = (annotation,)
    for part, out in zip(parts, outs):
        try:
            dtype, _ = dtypes.from_annotation(part)
        except TypeError as exc:
            raise SignatureError(f"resolver {name!r}, return type: {exc}", location=location) from None
        if dtype is not None and dtype != out.dtype:
            raise SignatureError(
                f"resolver {name!r} is annotated to return {dtype!r} for feature {out.name!r}, "
                f"which is declared {out.dtype!r}; make them agree",
                location=location,
            )
