"""Reading a source for the offline engine and materialization."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from parity.define.dtypes import DType


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
