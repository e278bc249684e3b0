"""Train/serve skew, measured: what was served against what training computes for the same entity,
features and time, and where they differ, the likely cause.

A logged value is compared with the offline engine's value at the request's time (its ``now``) by
``semantics.values.same_value`` (bit for bit, NaN equal to NaN) and by status (a value present
online and missing offline differs even when both are null). A masked value was logged without its
value and is not compared. Skew is counted per feature: compared values, mismatches, their causes,
and a few examples.

Each mismatch is given the first cause that explains it:

- ``definition_changed``: the feature's version when served is not its version now (resolver
  code, source or dtype changed): training would use the new definition on old requests.
- ``served_error``: the online path failed for the feature (a timeout, a source down) and served
  its default, while training computed it.
- ``store_ahead``: the request asked for a time before the value the online store held (status
  ``future``): the store keeps each key's latest value only, so the past is a training set's job.
- ``late_data``: a source row with an event time at or before the request time was created after
  the value was served, and the source's visibility ignores created times (``as_of="event_time"``),
  so training sees a row serving could not have.
- ``store_behind``: the online store served an older row of the key (or nothing) while the
  source's newest row at the request time was another: materialization was behind, or the row was
  written late into a source with no created time to tell when.
- ``source_rewritten``: no row of the key at or before the request time holds the served value
  any more (or none is left of a key served present): the source was changed in place or rows were
  deleted after serving.
- ``unexplained``: none of the feature's sources shows why (a bug to report).

The causes are read from the rows of each source in the feature's lineage for the served entity
key (``SourceRows``) — through a relationship, under the key it led to at the request time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from parity.semantics import visibility
from parity.semantics.time import iso_micros
from parity.semantics.values import same_value
from parity.semantics.wire import to_json

CAUSES: dict[str, str] = {
    "definition_changed": "the feature's definition changed since it was served",
    "served_error": "the online path failed and served the default",
    "store_ahead": "asked for a time before the online store's value (the store keeps the latest only)",
    "late_data": "rows at or before the request time arrived after serving (visibility ignores created times)",
    "store_behind": "the online store did not hold the source's newest row at the request time",
    "source_rewritten": "the source no longer holds the served value: rewritten after serving",
    "unexplained": "no cause found in the feature's sources",
}
NOT_COMPARED = "masked"  # logged without its value


@dataclass(frozen=True)
class Served:
    """One logged value of one feature, as served."""

    feature: str
    request_id: str
    entity: Mapping[str, object]
    request_time_us: int
    served_at_us: int
    value: object
    status: str | None
    version: str | None


@dataclass(frozen=True)
class SourceRows:
    """One lineage source's rows of the served entity key, in the row order (oldest first)."""

    view: str
    events_us: Sequence[int]
    created_us: Sequence[int | None]
    uses_created: bool  # whether the created time takes part in visibility
    values: Sequence[object] | None = None  # the feature's own column, when the feature is read from this view
    synced_us: int | None = None  # when the online store last held this key's value current (its watermark)
    tracks_sync: bool = True  # False: the store keeps no such mark for this view (a window index)

    def visible_at(self, i: int) -> int:
        """When row ``i`` became visible, by the source's own rule (``semantics.visibility``)."""
        created = self.created_us[i]
        return visibility.stored_visible_at(self.events_us[i], self.events_us[i] if created is None else created,
                                            self.uses_created)


@dataclass(frozen=True)
class Mismatch:
    """A logged value that training does not reproduce: what was served, what training gives, why."""

    logged: Served
    offline: object
    offline_status: str | None
    cause: str
    detail: str

    def to_dict(self) -> dict[str, object]:
        s = self.logged
        return {"feature": s.feature, "request_id": s.request_id, "entity": to_json(dict(s.entity)),
                "request_time": iso_micros(s.request_time_us), "served_at": iso_micros(s.served_at_us),
                "served": to_json(s.value), "served_status": s.status,
                "offline": to_json(self.offline), "offline_status": self.offline_status,
                "cause": self.cause, "detail": self.detail}


@dataclass
class FeatureSkew:
    feature: str
    compared: int = 0
    mismatches: int = 0
    not_compared: int = 0  # masked when served
    causes: Counter[str] = field(default_factory=Counter)
    examples: list[Mismatch] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0

    def to_dict(self) -> dict[str, object]:
        return {"feature": self.feature, "compared": self.compared, "mismatches": self.mismatches,
                "mismatch_rate": self.rate, "not_compared": self.not_compared, "causes": dict(self.causes),
                "examples": [m.to_dict() for m in self.examples]}


@dataclass
class SkewReport:
    rows: int = 0  # logged rows replayed (one per entity of a request)
    requests: int = 0
    seconds: float = 0.0
    features: dict[str, FeatureSkew] = field(default_factory=dict)
    undefined: Counter[str] = field(default_factory=Counter)  # logged features no longer defined: rows
    unreplayable: int = 0  # logged rows whose entity no longer fits the definitions' keys

    @property
    def mismatches(self) -> int:
        return sum(f.mismatches for f in self.features.values())

    def feature(self, ref: str) -> FeatureSkew:
        found = self.features.get(ref)
        if found is None:
            found = self.features[ref] = FeatureSkew(ref)
        return found

    def to_dict(self) -> dict[str, object]:
        return {"rows": self.rows, "requests": self.requests, "seconds": self.seconds,
                "mismatches": self.mismatches, "undefined": dict(self.undefined), "unreplayable": self.unreplayable,
                "features": [self.features[ref].to_dict() for ref in sorted(self.features)]}

    def lines(self) -> list[str]:
        """The report as a person reads it: per feature, its rate and causes, then examples."""
        out = [(f"replayed {self.rows:,} logged rows of {self.requests:,} requests through the offline engine "
                f"in {self.seconds:.2f} s: {self.mismatches:,} mismatches")]
        width = max((len(ref) for ref in self.features), default=0)
        for ref in sorted(self.features):
            f = self.features[ref]
            causes = ", ".join(f"{cause} {n:,}" for cause, n in f.causes.most_common())
            masked = f" ({f.not_compared:,} masked, not compared)" if f.not_compared else ""
            out.append(f"  {ref:<{width}}  {f.mismatches:>7,} / {f.compared:>9,} = {f.rate:7.3%}{masked}"
                       + (f"  [{causes}]" if causes else ""))
        for ref, n in sorted(self.undefined.items()):
            out.append(f"  {ref}: {n:,} logged rows not replayed: no longer defined")
        if self.unreplayable:
            out.append(f"  {self.unreplayable:,} logged rows not replayed: their entity keys no longer fit the "
                       "definitions (a key added or retyped since)")
        for ref in sorted(self.features):
            for m in self.features[ref].examples:
                s = m.logged
                out.append(f"  e.g. {ref} {to_json(dict(s.entity))} at {iso_micros(s.request_time_us)}: served "
                           f"{to_json(s.value)!r} ({s.status}), training gives {to_json(m.offline)!r} "
                           f"({m.offline_status}) — {m.cause}: {m.detail}")
        return out


def differs(served: object, served_status: str | None, offline: object, offline_status: str | None) -> bool:
    """Whether a served value is skewed against training's (never asked of a masked one)."""
    if not same_value(served, offline):
        return True
    return served_status is not None and offline_status is not None and served_status != offline_status


def diagnose(served: Served, current_version: str | None, sources: Sequence[SourceRows]) -> tuple[str, str]:
    """The likely cause of one mismatch, with what shows it (see the module's list, in its order)."""
    if served.version is not None and current_version is not None and served.version != current_version:
        return "definition_changed", f"version {served.version} when served, {current_version} now"
    if served.status == "error":
        return "served_error", "the online path failed for this feature when serving and served its default"
    if served.status == "future":
        return "store_ahead", ("the online store held a value newer than the request time (it keeps the latest "
                               "value only): a query for a past time is answered by a training set")
    t, s = served.request_time_us, served.served_at_us
    for src in sources:
        if src.uses_created:
            continue  # a row created after t is invisible at t offline too
        late = [c for e, c in zip(src.events_us, src.created_us) if e <= t and c is not None and c > s]
        if late:
            return "late_data", (f"{src.view}: {len(late):,} row(s) of this key with an event time at or before the "
                                 f"request were created after serving (first {iso_micros(min(late))}, served "
                                 f"{iso_micros(s)}); declare as_of='visible' to train on what serving could see")
    for src in sources:
        if src.values is None:
            continue
        visible = [i for i in range(len(src.events_us)) if src.visible_at(i) <= t]
        if not visible:
            if served.status == "present":
                return "source_rewritten", (f"{src.view}: the source has no row of this key at or before the "
                                            "request time any more: deleted after serving")
            continue
        newest = iso_micros(src.events_us[visible[-1]])
        if served.value is None:
            return "store_behind", (f"{src.view}: the online store had no value for this key; the source's newest "
                                    f"row at the request time is at {newest}")
        held = [i for i in visible if same_value(src.values[i], served.value)]
        if held:
            return "store_behind", (f"{src.view}: served the value of the row at {iso_micros(src.events_us[held[-1]])}; "
                                    f"the source's newest row at the request time is at {newest}")
        return "source_rewritten", (f"{src.view}: no row of this key at or before the request time holds the "
                                    f"served value {to_json(served.value)!r} (newest row at {newest})")
    for src in sources:  # a computed feature: an input's view the online store did not hold current
        if not src.tracks_sync:
            continue
        mark = -1 if src.synced_us is None else src.synced_us
        unheld = [e for i, e in enumerate(src.events_us) if mark < e and src.visible_at(i) <= t]
        if unheld:
            when = "never" if src.synced_us is None else f"through {iso_micros(src.synced_us)}"
            return "store_behind", (f"{src.view}: the online store held this key {when}, and the source has "
                                    f"{len(unheld):,} row(s) of it after that, at or before the request time "
                                    f"(newest at {iso_micros(max(unheld))})")
    return "unexplained", ("none of the feature's sources shows why now: the online store may have caught up "
                           "since serving; if not, report it with this example")
