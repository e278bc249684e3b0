"""How many key partitions a source is read in (a training set's step, a materialization): enough
that one partition of it fits the memory budget.

A source's size is estimated from what it can tell without reading its rows (a Parquet file's
footer); a source that cannot tell counts as fitting. The budget defaults to a quarter of the
machine's memory, leaving the rest to the spine, the outputs, the kernels' temporaries and the
other processes of a shared machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from parity.define.sources import Source
from parity.ports.source import SourceReader

# What one source row costs in memory at the peak of a step that scans whole rows (the scanned
# columns, the narrow key/time copy, its row index and sort): measured at ~230 B on the benchmark's
# 12-column rows. A lookup over files holds only keys and times a row (``OfflineEngine.
# _partitioned_lookup``): the large benchmark peaks at 4.8 GB with the partitions this gives.
BYTES_PER_ROW = 256
# What one event costs at the peak of a window index rebuild (its Python index rows, their running
# prefixes and the store's batch): 6,693 MB for 10M events whole (`bench/materialize.py medium
# --view window`), 2,477 MB in 5 partitions.
BYTES_PER_WINDOW_EVENT = 700
MAX_PARTITIONS = 4096


def machine_budget() -> int:
    """A quarter of the machine's physical memory (4 GiB when it cannot be read)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def estimated_rows(reader: SourceReader) -> int | None:
    """The rows a source holds, when it can say without reading them."""
    estimate = getattr(reader, "estimate_rows", None)
    return None if estimate is None else estimate()


def partitions_for(source: Source, reader_for: Callable[[Source], SourceReader], budget: int | None = None,
                   bytes_per_row: int = BYTES_PER_ROW) -> int:
    """The key partitions that keep ``source`` within ``budget`` bytes at ``bytes_per_row`` (1 when
    it cannot tell its size: a database table is fetched whole anyway, so passes over it would
    only cost more)."""
    rows = estimated_rows(reader_for(source)) or 0
    return max(1, min(MAX_PARTITIONS, math.ceil(rows * bytes_per_row / (budget or machine_budget()))))
