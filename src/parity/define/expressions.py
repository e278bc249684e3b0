"""Row filters for window aggregations: ``col("amount") > 100``, combined with ``&``, ``|``, ``~``.

A filter is a small expression tree over an event's columns, written once and evaluated by one
compiler (``semantics.filters``) on every path. Its logic is SQL's three-valued logic: a comparison
with a null is unknown, and an event is kept only where the filter is true.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

Literal = bool | int | float | str | None


class Expr(ABC):
    """A node of a filter. Build them with ``col`` and operators; never subclass."""

    @abstractmethod
    def describe(self) -> object:
        """A canonical, JSON-friendly form (part of the feature's version)."""

    @abstractmethod
    def columns(self) -> set[str]:
        """The event columns the filter reads."""

    def _cmp(self, op: str, other: object) -> Compare:
        return Compare(op, self, other if isinstance(other, Expr) else Lit(_literal(other)))

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return self._cmp("==", other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return self._cmp("!=", other)

    def __lt__(self, other: object) -> Compare:
        return self._cmp("<", other)

    def __le__(self, other: object) -> Compare:
        return self._cmp("<=", other)

    def __gt__(self, other: object) -> Compare:
        return self._cmp(">", other)

    def __ge__(self, other: object) -> Compare:
        return self._cmp(">=", other)

    def __and__(self, other: Expr) -> Logical:
        return Logical("and", (self, _expr(other)))

    def __or__(self, other: Expr) -> Logical:
        return Logical("or", (self, _expr(other)))

    def __invert__(self) -> Not:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError("a filter expression has no truth value; combine filters with &, | and ~, not and/or/not")

    __hash__ = object.__hash__

    def is_in(self, values: Iterable[Literal]) -> IsIn:
        return IsIn(self, tuple(_literal(v) for v in values))

    def is_null(self) -> IsNull:
        return IsNull(self, True)

    def is_not_null(self) -> IsNull:
        return IsNull(self, False)


def _literal(value: object) -> Literal:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"a filter compares with a bool, int, float, str or None, not {type(value).__name__} ({value!r})")


def _expr(value: object) -> Expr:
    if not isinstance(value, Expr):
        raise TypeError(f"combine filters with filters (col(...) > 1), not {type(value).__name__}")
    return value


@dataclass(frozen=True, eq=False)
class Col(Expr):
    name: str

    def describe(self) -> object:
        return ["col", self.name]

    def columns(self) -> set[str]:
        return {self.name}


@dataclass(frozen=True, eq=False)
class Lit(Expr):
    value: Literal

    def describe(self) -> object:
        return ["lit", type(self.value).__name__, self.value]

    def columns(self) -> set[str]:
        return set()


@dataclass(frozen=True, eq=False)
class Compare(Expr):
    op: str
    left: Expr
    right: Expr

    def describe(self) -> object:
        return [self.op, self.left.describe(), self.right.describe()]

    def columns(self) -> set[str]:
        return self.left.columns() | self.right.columns()


@dataclass(frozen=True, eq=False)
class Logical(Expr):
    op: str  # "and" | "or"
    parts: tuple[Expr, ...]

    def describe(self) -> object:
        return [self.op, *(p.describe() for p in self.parts)]

    def columns(self) -> set[str]:
        return set().union(*(p.columns() for p in self.parts))


@dataclass(frozen=True, eq=False)
class Not(Expr):
    part: Expr

    def describe(self) -> object:
        return ["not", self.part.describe()]

    def columns(self) -> set[str]:
        return self.part.columns()


@dataclass(frozen=True, eq=False)
class IsIn(Expr):
    part: Expr
    values: tuple[Literal, ...]

    def describe(self) -> object:
        return ["in", self.part.describe(), [[type(v).__name__, v] for v in self.values]]

    def columns(self) -> set[str]:
        return self.part.columns()


@dataclass(frozen=True, eq=False)
class IsNull(Expr):
    part: Expr
    null: bool

    def describe(self) -> object:
        return ["is_null" if self.null else "is_not_null", self.part.describe()]

    def columns(self) -> set[str]:
        return self.part.columns()


def col(name: str) -> Col:
    """A column of the event: ``col("status") == "approved"``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"col() takes a column name, not {name!r}")
    return Col(name)

