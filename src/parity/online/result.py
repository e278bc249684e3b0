"""What an online query returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["present", "missing", "expired", "future", "error", "masked"]


@dataclass(frozen=True, slots=True)
class FeatureValue:
    """One value with how it was found.

    present: a row was chosen (its value may still be null, exactly as offline); missing: no row
    for the key; expired: the row is older than max_age; future: the online store holds a value
    that became visible after the request time (``now``), so the value as of then is not kept
    online — ask a training set for the past; error: its source or resolver failed (``error`` says
    what, the value is the feature's default); masked: the caller may name the feature but not
    see it (``define.access``), so no value, time or error is given.
    """

    value: object
    status: Status
    event_time: dt.datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class QueryResult:
    """``rows[i][ref]`` is the value of feature ``ref`` for the i-th entity; ``details`` (when asked
    for with ``with_status=True``) holds a ``FeatureValue`` per value."""

    features: tuple[str, ...]
    rows: list[dict[str, object]]
    details: list[dict[str, FeatureValue]] | None = None
    # Each value's status alone, when only that was asked for (what the feature log keeps); not part
    # of the answer's identity.
    statuses: list[dict[str, str]] | None = field(default=None, repr=False, compare=False)

    def column(self, ref: str) -> list[object]:
        return [row[ref] for row in self.rows]

    def for_principal(self, masked: frozenset[str], public: Callable[[str], str]) -> QueryResult:
        """The answer as a principal sees it: the values of ``masked`` withheld (null, status
        masked) and error texts through ``public`` (``semantics.calls.public``)."""
        if not masked and (self.details is None or not any(
                v.error is not None for row in self.details for v in row.values())):
            return self
        rows = [{ref: None if ref in masked else value for ref, value in row.items()} for row in self.rows]
        statuses = None if self.statuses is None else [
            {ref: "masked" if ref in masked else status for ref, status in row.items()} for row in self.statuses]
        details = None if self.details is None else [
            {ref: _MASKED if ref in masked else value if value.error is None else
             FeatureValue(value.value, value.status, value.event_time, public(value.error))
             for ref, value in row.items()} for row in self.details]
        return QueryResult(self.features, rows, details, statuses)


_MASKED = FeatureValue(None, "masked")
