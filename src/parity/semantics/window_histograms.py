"""Histogram lanes of a window index: how ``approx_percentile`` is read online with a bounded number
of reads, whatever the window's width.

The percentile of a window is read from the bucket counts of its finite values
(``windows.bucket``: fixed log-linear buckets, the same on every path). Bucket counts subtract, so
the window (t − w, t] — a suffix of the key's events when all of them were visible by t — is the
counts up to the last event ≤ t minus the counts up to the last event ≤ t − w, like the prefix
states of ``semantics.window_state``. Storing every event's full counts would cost one entry per
distinct bucket per event, so they are split in two:

- a *checkpoint*: the key's full counts at some of its lane events, kept as members of the key's
  window sets (slot = the lane's id), read with one descent — the last checkpoint at or before a
  time;
- a *delta*, in every event's prefix state: the counts of the lane events after the last checkpoint,
  up to and including it.

So the counts up to the last event ≤ b are checkpoint(b) + delta(b) — both found by b alone, in the
same snapshot as the prefix seeks (no read depends on another's answer). A lane event becomes a
checkpoint when its delta reaches ``spacing(distinct buckets so far)`` events: about √(2·B) for B
distinct buckets, which balances the deltas' size (≤ spacing entries per event) against the
checkpoints' (B entries every spacing events). Storage per lane event is therefore O(√B) entries,
and a read decodes two checkpoints and two deltas: O(B + √B), never the window's events.

The placement rule depends only on the lane's events before it, so a rebuild and any sequence of
incremental writes — late events re-state everything after them, checkpoints included — give the
same layout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np

from parity.semantics import windows as rule

Counts = dict[int, int]  # bucket -> how many finite values fall in it
MIN_SPACING = 16


class Histogram:
    """A histogram lane's state at one event: the counts at the last checkpoint (shared between
    events, never changed) and the delta of the events since."""

    __slots__ = ("base", "delta", "events")

    def __init__(self, base: Mapping[int, int], delta: Counts, events: int) -> None:
        self.base = base
        self.delta = delta
        self.events = events  # lane events in the delta (non-finite ones included: they count no bucket)


EMPTY: Mapping[int, int] = {}


def empty() -> Histogram:
    return Histogram(EMPTY, {}, 0)


def spacing(distinct: int) -> int:
    """Lane events between checkpoints for a key whose counts hold ``distinct`` buckets."""
    return max(MIN_SPACING, math.isqrt(2 * distinct))


def advance(h: Histogram, value: object) -> Histogram:
    """The state after one more lane event (a new object; ``h`` is left as it was). When the event
    becomes a checkpoint the result's base is a new mapping (``is_checkpoint``)."""
    found = rule.percentile_bucket(value)
    delta = dict(h.delta)
    if found is not None:
        delta[found] = delta.get(found, 0) + 1
    if h.events + 1 < spacing(len(h.base)):
        return Histogram(h.base, delta, h.events + 1)
    base = dict(h.base)
    for b, c in delta.items():
        base[b] = base.get(b, 0) + c
    return Histogram(base, {}, 0)


def is_checkpoint(before: Histogram, after: Histogram) -> bool:
    return after.base is not before.base


def pack(counts: Mapping[int, int]) -> list[int]:
    """Counts as a flat list in bucket order, buckets as differences (small numbers: short msgpack)."""
    out: list[int] = []
    previous = 0
    for b in sorted(counts):
        out.extend((b - previous, counts[b]))
        previous = b
    return out


def unpack(packed: Sequence[int] | None) -> Counts:
    counts: Counts = {}
    if not packed:
        return counts
    b = 0
    for i in range(0, len(packed), 2):
        b += packed[i]
        counts[b] = packed[i + 1]
    return counts


def encode(h: Histogram) -> list[int]:
    """What an event's prefix state stores of the lane: its delta's event count, then its counts."""
    return [h.events, *pack(h.delta)]


def decode(stored: Sequence[int]) -> Histogram:
    """An event's stored delta; its base is the checkpoint, read separately (``with_base``)."""
    return Histogram(EMPTY, unpack(stored[1:]), stored[0])


def with_base(h: Histogram, checkpoint: Sequence[int] | None) -> Histogram:
    return Histogram(unpack(checkpoint), h.delta, h.events)


def _arrays(checkpoint: Sequence[int] | None, delta: Counts) -> tuple[np.ndarray, np.ndarray]:
    """A checkpoint's packed counts and a delta as (buckets, counts) arrays."""
    packed = np.fromiter(checkpoint or (), np.int64, len(checkpoint or ())).reshape(-1, 2)
    buckets = np.concatenate((np.cumsum(packed[:, 0]), np.fromiter(delta, np.int64, len(delta))))
    return buckets, np.concatenate((packed[:, 1], np.fromiter(delta.values(), np.int64, len(delta))))


def window_percentile(high: tuple[Sequence[int] | None, Counts], low: tuple[Sequence[int] | None, Counts] | None,
                      quantile: Fraction) -> float | None:
    """The percentile of the window: the counts up to t (a checkpoint's packed counts and an
    event's delta) minus those up to t − w (None: nothing before the window), then the
    nearest-rank bucket (``windows.percentile_rank``, as ``percentile_of_buckets``), on arrays: a
    checkpoint holds every distinct bucket of the key, thousands of them."""
    buckets, counts = _arrays(*high)
    if low is not None:
        low_buckets, low_counts = _arrays(*low)
        buckets, counts = np.concatenate((buckets, low_buckets)), np.concatenate((counts, -low_counts))
    if not len(buckets):
        return None
    order = np.argsort(buckets, kind="stable")
    buckets, counts = buckets[order], counts[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(buckets)) + 1))
    cumulative = np.cumsum(np.add.reduceat(counts, starts))  # per distinct bucket, exact int64
    n = int(cumulative[-1])
    if n == 0:
        return None
    at = int(np.searchsorted(cumulative, rule.percentile_rank(quantile, n)))  # the first reaching the rank
    return rule.bucket_value(int(buckets[starts[at]]))
