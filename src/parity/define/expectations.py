"""Expectations declared on features: what their values must look like.

>>> pt.Feature("amount", pt.Float64, expect=[pt.expect.not_null(0.99), pt.expect.between(0, 50_000)])
>>> pt.Feature("country", pt.String, expect=[pt.expect.one_of(["DE", "FR", "NL"])])

A view adds ``unique_key_time=True`` (no two rows of a key at one event time: the as-of choice
would depend on ingestion order), ``freshness=timedelta(hours=1)`` (its newest event no older than
that) and ``on_violation="warn"`` or ``"quarantine"``. They are checked by ``semantics.expectations``
at materialization (on the rows about to reach the online store; a quarantined batch is not
written) and on served traffic by ``parity monitor``. Expectations do not change values, so they
are not part of a feature's version.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from parity.errors import DefinitionError

Kind = Literal["not_null", "between", "one_of"]


@dataclass(frozen=True)
class Expectation:
    kind: Kind
    min_rate: float = 1.0  # not_null: the share of values that must be present
    low: float | None = None  # between: inclusive bounds (None: unbounded)
    high: float | None = None
    values: tuple[object, ...] = ()  # one_of

    def describe(self) -> str:
        if self.kind == "not_null":
            return "not null" if self.min_rate == 1.0 else f"not null in at least {self.min_rate:.4g} of values"
        if self.kind == "between":
            return f"between {self.low if self.low is not None else '-inf'} and {self.high if self.high is not None else 'inf'}"
        shown = ", ".join(repr(v) for v in self.values[:8]) + (", ..." if len(self.values) > 8 else "")
        return f"one of {shown}"


class expect:  # lower case: read as a namespace, pt.expect.not_null(...)
    @staticmethod
    def not_null(min_rate: float = 1.0) -> Expectation:
        if isinstance(min_rate, bool) or not isinstance(min_rate, int | float) or not 0 < min_rate <= 1:
            raise DefinitionError(f"expect.not_null({min_rate!r}): give the share of values that must be present, "
                                  "above 0 and at most 1")
        return Expectation("not_null", min_rate=float(min_rate))

    @staticmethod
    def between(low: float | None = None, high: float | None = None) -> Expectation:
        for bound in (low, high):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int | float)
                                      or math.isnan(bound)):
                raise DefinitionError(f"expect.between({low!r}, {high!r}): bounds are numbers or None")
        if low is None and high is None:
            raise DefinitionError("expect.between(): give a low bound, a high bound or both")
        if low is not None and high is not None and low > high:
            raise DefinitionError(f"expect.between({low!r}, {high!r}): the low bound is above the high one")
        return Expectation("between", low=None if low is None else float(low), high=None if high is None else float(high))

    @staticmethod
    def one_of(values: Iterable[object]) -> Expectation:
        found = tuple(values)
        if not found or isinstance(values, str):
            raise DefinitionError(f"expect.one_of({values!r}): give a list of the allowed values")
        return Expectation("one_of", values=found)


def check_expectations(expectations: Iterable[object], dtype_name: str, where: str, location: str) -> tuple[Expectation, ...]:
    found: list[Expectation] = []
    for e in expectations:
        if not isinstance(e, Expectation):
            raise DefinitionError(f"{where}: expect takes pt.expect.not_null/between/one_of(...), got {e!r}",
                                  location=location)
        if e.kind == "between" and dtype_name not in ("Int64", "Float64"):
            raise DefinitionError(f"{where}: expect.between needs a number feature, not {dtype_name}", location=location)
        found.append(e)
    return tuple(found)
