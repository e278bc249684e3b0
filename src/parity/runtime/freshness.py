"""Where a stream source's writer leaves its freshness (event → servable and receive → servable
lag, consumer lag) every second: ``.parity/freshness/<source>.json``, read by ``parity freshness``
and by the server's metrics."""

from __future__ import annotations

import json
import os


def freshness_path(root: str, source: str) -> str:
    return os.path.join(root, ".parity", "freshness", f"{source}.json")


def write_freshness(root: str, source: str, stats: object) -> None:
    """Replace the file whole (a reader never sees half of it)."""
    path = freshness_path(root, source)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(stats, handle, indent=1, default=str)
    os.replace(tmp, path)
