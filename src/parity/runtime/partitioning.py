"""How many key partitions a training set runs in: enough that one partition of its largest source
fits the memory budget.

A source's size is estimated from what it can tell without reading its rows (a Parquet file's
footer); a source that cannot tell counts as fitting. The budget defaults to a quarter of the
machine's memory, leaving the rest to the spine, the outputs, the kernels' temporaries and the
other processes of a shared machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

from parity.define.sources import Source
from parity.plan.catalog import Catalog
from parity.plan.nodes import Lookup, Plan, WindowRead
from parity.ports.source import SourceReader

# What one source row costs in memory at the peak of a lookup (the scanned columns, the narrow
# key/time copy, its row index and sort): measured at ~230 B on the benchmark's 12-column rows.
BYTES_PER_ROW = 256
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


def partitions_for(plan: Plan, catalog: Catalog, reader_for: Callable[[Source], SourceReader],
                   budget: int | None = None) -> int:
    """The key partitions that keep the largest source of ``plan`` within ``budget`` bytes."""
    sources = [catalog.views[step.view].source if isinstance(step, Lookup) else catalog.window_views[step.view].source
               for step in plan.steps if isinstance(step, Lookup | WindowRead)]
    return partitions_for_sources(sources, reader_for, budget)


def partitions_for_sources(sources: Sequence[Source], reader_for: Callable[[Source], SourceReader],
                           budget: int | None = None) -> int:
    """The key partitions that keep the largest of ``sources`` within ``budget`` bytes."""
    budget = budget or machine_budget()
    largest = max((estimated_rows(reader_for(source)) or 0 for source in sources), default=0)
    return max(1, min(MAX_PARTITIONS, math.ceil(largest * BYTES_PER_ROW / budget)))
