"""Where the served-value log goes (``monitor.feature_log`` hands it columns; a connector keeps them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class FeatureLogSink(Protocol):
    def write(self, columns: Mapping[str, Sequence[object]]) -> None:
        """Keep one batch of log rows (``monitor.feature_log.COLUMNS``)."""
        ...

    def idle(self) -> None:
        """Called when a tick had nothing to write (a sink may close what is due)."""
        ...

    def close(self) -> None:
        """Make everything written so far durable and readable (the last call)."""
        ...
