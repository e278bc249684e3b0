"""Features, and feature views: features mapped from the columns of one source."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from parity.define.dtypes import DType
from parity.define.entities import Entity
from parity.define.expectations import Expectation, check_expectations
from parity.define.location import caller_location
from parity.define.sources import Source, check_column_name
from parity.errors import DefinitionError


@dataclass(frozen=True)
class Feature:
    """A typed, named value of an entity.

    In a ``FeatureView`` it maps a source column (``column``, by default its own name); as a
    resolver output it names what the function returns. ``max_age`` (source-backed only) overrides
    the view's: a value older than that at query time is null offline and "expired" online.
    ``default`` is served online (with status "error" and the reason) when the value cannot be
    resolved because its source or resolver failed or timed out. ``expect`` lists what its values
    must look like (``define.expectations``).
    """

    name: str
    dtype: DType
    column: str | None = None
    description: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()
    max_age: dt.timedelta | None = None
    default: object = None
    expect: tuple[Expectation, ...] = ()
    location: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.location:
            object.__setattr__(self, "location", caller_location())
        if not isinstance(self.name, str) or not self.name.isidentifier() or self.name.startswith("__"):
            raise DefinitionError(f"feature name {self.name!r} must be a Python identifier not starting with '__'",
                                  location=self.location)
        check_column_name(self.column, f"feature {self.name!r}", self.location)
        if not isinstance(self.dtype, DType):
            raise DefinitionError(
                f"feature {self.name!r}: dtype must be a parity dtype such as Int64, got {self.dtype!r}",
                location=self.location,
            )
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "expect", check_expectations(self.expect, self.dtype.name,
                                                              f"feature {self.name!r}", self.location))
        if self.max_age is not None and self.max_age < dt.timedelta(0):
            raise DefinitionError(f"feature {self.name!r}: max_age must not be negative", location=self.location)

    @property
    def source_column(self) -> str:
        return self.column or self.name

    @classmethod
    def windowed(cls, name: str, width: str, dtype: DType, *, description: str, owner: str | None,
                 tags: tuple[str, ...], location: str) -> Feature:
        """The feature one width of a window aggregate is (``txn_count[10m]``): the catalog makes
        these from an ``Aggregate``, whose own checks already ran, so the name's brackets are allowed."""
        feature = object.__new__(cls)
        for attr, value in (("name", f"{name}[{width}]"), ("dtype", dtype), ("column", None),
                            ("description", description), ("owner", owner), ("tags", tags), ("max_age", None),
                            ("default", None), ("expect", ()), ("location", location)):
            object.__setattr__(feature, attr, value)
        return feature


@dataclass(frozen=True, eq=False)
class FeatureView:
    """Features of one entity read from one source; they share one as-of row choice.

    >>> FeatureView("user_profile", entity=user, source=users,
    ...             features=[Feature("country", String), Feature("credit_limit", Float64)],
    ...             max_age=timedelta(days=365))

    ``key_columns`` maps the entity's keys to the source's columns when their names differ.

    ``max_staleness`` turns on request-time resolution for sources that answer point lookups
    (PostgreSQL, MySQL): online, a stored value synced less than ``max_staleness`` ago is served;
    otherwise the source is asked at request time (within ``timeout`` seconds) and the answer is
    written back. ``timedelta(0)`` always asks the source; None (the default) serves the online store.

    ``freshness``, ``unique_key_time`` and ``on_violation`` declare what the view's data must meet
    and what materialization does when it does not (``define.expectations``).
    """

    name: str
    entity: Entity
    source: Source
    features: tuple[Feature, ...]
    max_age: dt.timedelta | None = None
    key_columns: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    owner: str | None = None
    tags: tuple[str, ...] = ()
    max_staleness: dt.timedelta | None = None
    timeout: float = 1.0
    freshness: dt.timedelta | None = None
    unique_key_time: bool = False
    on_violation: str = "warn"
    location: str = ""

    def __init__(
        self,
        name: str,
        *,
        entity: Entity,
        source: Source,
        features: Iterable[Feature],
        max_age: dt.timedelta | None = None,
        key_columns: Mapping[str, str] | None = None,
        description: str = "",
        owner: str | None = None,
        tags: Sequence[str] = (),
        max_staleness: dt.timedelta | None = None,
        timeout: float = 1.0,
        freshness: dt.timedelta | None = None,
        unique_key_time: bool = False,
        on_violation: str = "warn",
    ) -> None:
        location = caller_location()
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "entity", entity)
        set_(self, "source", source)
        set_(self, "features", tuple(features))
        set_(self, "max_age", max_age)
        set_(self, "key_columns", dict(key_columns or {}))
        set_(self, "description", description)
        set_(self, "owner", owner)
        set_(self, "tags", tuple(tags))
        set_(self, "max_staleness", max_staleness)
        set_(self, "timeout", timeout)
        set_(self, "freshness", freshness)
        set_(self, "unique_key_time", unique_key_time)
        set_(self, "on_violation", on_violation)
        set_(self, "location", location)
        if on_violation not in ("warn", "quarantine"):
            raise DefinitionError(f"feature view {name!r}: on_violation={on_violation!r}; expected 'warn' or "
                                  "'quarantine'", location=location)
        if freshness is not None and (not isinstance(freshness, dt.timedelta) or freshness <= dt.timedelta(0)):
            raise DefinitionError(f"feature view {name!r}: freshness must be a positive timedelta", location=location)
        if not isinstance(unique_key_time, bool):
            raise DefinitionError(f"feature view {name!r}: unique_key_time must be True or False", location=location)
        if max_staleness is not None and not source.answers_point_lookups:
            raise DefinitionError(
                f"feature view {name!r}: max_staleness needs a source that answers lookups at request time "
                f"(PostgresSource, MySQLSource); {type(source).__name__} {source.name!r} is served from the "
                f"online store after materialization",
                location=location,
            )
        if max_staleness is not None and max_staleness < dt.timedelta(0):
            raise DefinitionError(f"feature view {name!r}: max_staleness must not be negative", location=location)
        if not timeout > 0:
            raise DefinitionError(f"feature view {name!r}: timeout must be a positive number of seconds", location=location)
        if not isinstance(name, str) or not name.isidentifier():
            raise DefinitionError(f"feature view name {name!r} must be a Python identifier", location=location)
        for key, column in self.key_columns.items():
            check_column_name(column, f"feature view {name!r}, key {key!r}", location)
        if not self.features:
            raise DefinitionError(f"feature view {name!r} has no features", location=location)
        unknown = set(self.key_columns) - set(entity.keys)
        if unknown:
            raise DefinitionError(
                f"feature view {name!r}: key_columns names {sorted(unknown)}, which are not keys of "
                f"entity {entity.name!r} (its keys: {list(entity.keys)})",
                location=location,
            )
        if max_age is not None and max_age < dt.timedelta(0):
            raise DefinitionError(f"feature view {name!r}: max_age must not be negative", location=location)

    def source_key(self, key: str) -> str:
        return self.key_columns.get(key, key)

    def max_age_of(self, feature: Feature) -> dt.timedelta | None:
        return feature.max_age if feature.max_age is not None else self.max_age

    def __repr__(self) -> str:
        return f"FeatureView({self.name!r})"
