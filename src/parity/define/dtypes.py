"""Feature data types and how they map to Python types.

A dtype is a small frozen value; engines map it to Arrow / Polars types (``parity.semantics.types``).
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    name: str
    inner: DType | None = None

    def __repr__(self) -> str:
        return f"List({self.inner!r})" if self.inner is not None else self.name

    @property
    def python_type(self) -> type:
        return list if self.inner is not None else _PY[self.name]


Int64 = DType("Int64")
Float64 = DType("Float64")
Bool = DType("Bool")
String = DType("String")
Timestamp = DType("Timestamp")
Date = DType("Date")


def List(inner: DType) -> DType:
    if inner.inner is not None:
        raise TypeError("parity supports lists of scalars, not lists of lists")
    return DType("List", inner)


SCALARS = (Int64, Float64, Bool, String, Timestamp, Date)
_PY: dict[str, type] = {
    "Int64": int,
    "Float64": float,
    "Bool": bool,
    "String": str,
    "Timestamp": dt.datetime,
    "Date": dt.date,
}
_FROM_PY = {v: DType(k) for k, v in _PY.items()}


def from_annotation(annotation: object) -> tuple[DType | None, bool]:
    """The dtype a Python annotation names, and whether it admits None.

    Returns (None, ...) when the annotation says nothing checkable (missing or ``Any``).
    """
    if annotation is None or annotation is typing.Any or annotation is object:
        return None, True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return from_annotation(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"unions other than Optional are not feature types: {annotation!r}")
        inner, _ = from_annotation(args[0])
        return inner, nullable
    if origin is list:
        (arg,) = typing.get_args(annotation) or (None,)
        if arg is None:
            raise TypeError("write list[int] (or another element type), not a bare list")
        inner, _ = from_annotation(arg)
        return (List(inner) if inner else None), False
    if isinstance(annotation, type) and annotation in _FROM_PY:
        return _FROM_PY[annotation], False
    raise TypeError(f"{annotation!r} is not a feature type (use int, float, bool, str, datetime, date or list[...])")


def parse(name: str) -> DType:
    """Inverse of ``repr``: ``'Int64'`` or ``'List(String)'``."""
    if name.startswith("List(") and name.endswith(")"):
        return List(parse(name[5:-1]))
    if name not in _PY:
        raise ValueError(f"unknown dtype {name!r}")
    return DType(name)
