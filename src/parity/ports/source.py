"""Reading a source: scans for the offline engine and materialization, point lookups online."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from parity.define.dtypes import DType
from parity.ports.online_store import StoredRow


@dataclass(frozen=True)
class ScanRequest:
    """What to read: typed columns, and optionally a window of visibility time (µs, inclusive end).

    The result has the requested columns (renamed to the given names and cast to the dtypes) plus
    ``__ev``, ``__cr`` (Int64 µs UTC; ``__cr`` null when the source has no created time) and
    ``__seq`` (ingestion order).
    """

    columns: Mapping[str, tuple[str, DType]]  # output name -> (source column, dtype)
    visible_after_us: int | None = None
    visible_until_us: int | None = None
    where: str = ""  # the feature view asking, for error messages


class SourceReader(Protocol):
    def scan(self, request: ScanRequest) -> pl.DataFrame: ...

    def describe(self) -> str: ...


class PointLookupReader(SourceReader, Protocol):
    """A source that can answer "the as-of row of these keys at t" itself (a database).

    ``lookup`` returns, per key found (storage form, ``request.columns`` starting with the keys),
    the chosen row as the online store holds it: (event µs, created µs, values of the remaining
    requested columns in order).
    """

    supports_point_lookup: bool

    async def lookup(
        self, request: ScanRequest, key_names: Sequence[str], keys: Sequence[tuple[object, ...]], t_us: int
    ) -> dict[tuple[object, ...], StoredRow]: ...

    async def aclose(self) -> None: ...
