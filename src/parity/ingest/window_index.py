"""Keeping a window view's online index: events in row order per key, each with the exact prefix
state of its key's events up to it (``semantics.window_state``), and each key's window sets
(``semantics.window_sets``: an event, in order or late, changes a set by a few members).

Rebuilds compute prefixes in one pass per key. Incremental writes (streams, pushes) are cheap
when events arrive in order — the writer keeps each key's last event, so an append needs no read
— and exact when they do not: an event that lands before some of its key's events re-states the
prefixes of those (read back, shifted, written in the same transaction).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import polars as pl

from parity.define.windows import WindowView
from parity.ports.online_store import OnlineStore, SetMember, WindowEvent, window_position
from parity.semantics import values, windows
from parity.semantics import window_sets as sets
from parity.semantics import window_state as state
from parity.semantics.filters import compile_filter
from parity.semantics.keys import encode as encode_key
from parity.semantics.ordering import CREATED, EVENT, SEQUENCE


def lane_masks(view: WindowView, events: pl.DataFrame) -> pl.Series:
    """Each event's lane mask: bit i set when the view's i-th aggregate reads it (its filter
    passes — ``semantics.filters``, the one evaluator — and its column has a value)."""
    lanes = pl.lit(0, pl.Int64)
    for i, aggregate in enumerate(view.features):
        keep = compile_filter(aggregate.where) if aggregate.where is not None else pl.lit(True)
        if aggregate.aggregation.column is not None:
            keep = keep & pl.col(aggregate.aggregation.column).is_not_null()
        lanes = lanes + pl.when(keep).then(pl.lit(1 << i, pl.Int64)).otherwise(pl.lit(0, pl.Int64))
    # with_columns, not select: a mask that is a literal (counts without a filter) still gets a row per event
    return events.with_columns(lanes.alias("__parity_lanes"))["__parity_lanes"] if events.height else \
        pl.Series("lanes", [], pl.Int64)


def index_events(view: WindowView, events: pl.DataFrame) -> list[WindowEvent]:
    """Events (``semantics.windows.sorted_events`` columns) as index rows, without prefixes yet."""
    lanes = lane_masks(view, events).to_list()
    key_cols = [events[k].cast(values.storage_polars_type(d)).to_list() for k, d in view.entity.keys.items()]
    value_cols = [events[c].cast(values.storage_polars_type(d)).to_list() for c, d in view.columns.items()]
    evs, crs = events[EVENT].to_list(), events[CREATED].to_list()
    seqs, vis = events[SEQUENCE].cast(pl.Int64).to_list(), events[windows.VISIBLE].to_list()
    keys = list(zip(*key_cols)) if key_cols else [()] * events.height
    payloads = list(zip(*value_cols)) if value_cols else [()] * events.height
    return [(k, ev, cr, seq, v, lane, payload, None, None)
            for k, ev, cr, seq, v, lane, payload in zip(keys, evs, crs, seqs, vis, lanes, payloads)]


def with_prefixes(lanes: Sequence[state.Lane], events: Iterable[WindowEvent],
                  start: dict[bytes, state.State] | None = None) -> Iterator[WindowEvent]:
    """Events in row order per key (keys may interleave), each with its key's running prefix;
    ``start`` holds prefixes to continue from, by encoded key."""
    # Keys are grouped by their encoding, not the tuple: a NaN is never equal to itself.
    running: dict[bytes, state.State] = dict(start or {})
    zero = state.zero(lanes)
    for e in events:
        group = encode_key(e[0])
        s = state.advance(running.get(group) or zero, lanes, e[5], e[6])
        running[group] = s
        yield (*e[:7], state.encode(s), e[8])


def set_members(slots: Sequence[sets.Slot], events: Sequence[WindowEvent]) -> Iterator[SetMember]:
    """Every key's window sets, from its events (in row order per key; keys may interleave)."""
    if not slots:
        return
    by_key: dict[bytes, list[WindowEvent]] = {}
    for e in events:
        by_key.setdefault(encode_key(e[0]), []).append(e)  # by encoding: a NaN is never equal to itself
    for held in by_key.values():
        key = held[0][0]
        for slot in slots:
            lane = [(window_position(e), e[6][slot.column]) for e in held if e[5] & slot.bit]
            for pos, value in sets.members_of(slot, lane):
                yield (key, slot.id, pos, value)


def rebuild(view: WindowView, table: str, store: OnlineStore, events: pl.DataFrame) -> int:
    lanes, _ = state.lanes_of(view)
    rows = index_events(view, events)
    return store.window_replace(table, with_prefixes(lanes, rows), set_members(sets.slots_of(view), rows))


class _SetChanges:
    """A write's set changes, netted: a member added and removed in one write is neither."""

    def __init__(self) -> None:
        self.added: dict[tuple[bytes, int, sets.Position], SetMember] = {}
        self.removed: dict[tuple[bytes, int, sets.Position], SetMember] = {}

    def apply(self, group: bytes, key: tuple[object, ...], slot: int, added: list[sets.Member],
              removed: list[sets.Member]) -> None:
        for pos, value in removed:
            if self.added.pop((group, slot, pos), None) is None:
                self.removed[(group, slot, pos)] = (key, slot, pos, value)
        for pos, value in added:
            self.added[(group, slot, pos)] = (key, slot, pos, value)


_NO_SET = sets.SetState()  # an ``all`` set: nothing of it is held
CACHED_KEYS = 200_000  # keys whose last event and sets a writer keeps; the oldest half go past it


class WindowWriter:
    """The single writer of one window index (one consumer process per source).

    It keeps each key's last event (its place and decoded prefix) and its min/max/distinct sets,
    so an event that comes after everything its key holds — the usual case — is appended with no
    read at all. It keeps them for up to ``CACHED_KEYS`` keys; an evicted key is read back
    (``window_last``, ``window_sets``) when it comes again.
    """

    def __init__(self, view: WindowView, table: str, store: OnlineStore) -> None:
        self.view = view
        self.table = table
        self.store = store
        self.lanes, _ = state.lanes_of(view)
        self._zero = state.zero(self.lanes)
        self._last: dict[bytes, tuple[tuple[int, int, int], state.State] | None] = {}  # by encoded key
        self.slots = sets.slots_of(view)
        self._held_slots = [s for s in self.slots if s.kind != "all"]  # the sets a writer must know
        self._sets: dict[bytes, dict[int, sets.SetState]] = {}  # by encoded key, then slot

    def forget(self) -> None:
        """Drop the cached last events and sets (after the index was rebuilt underneath)."""
        self._last.clear()
        self._sets.clear()

    def _add_to_sets(self, changes: _SetChanges, group: bytes, e: WindowEvent) -> None:
        # A key's held sets were read with its last event (``write``): they are there for every key.
        held = self._sets[group] if self._held_slots else {}
        pos = window_position(e)
        for slot in self.slots:
            if e[5] & slot.bit:
                added, removed = sets.add_event(slot, held.get(slot.id, _NO_SET), pos, e[6][slot.column])
                changes.apply(group, e[0], slot.id, added, removed)

    def write(self, events: Sequence[WindowEvent]) -> None:
        """Add events (sorted by key and row order, as ``index_events`` gives them; an event
        already held is left as it is)."""
        groups = [encode_key(e[0]) for e in events]
        unknown = {g: e[0] for g, e in zip(groups, events) if g not in self._last}
        if unknown:
            found = self.store.window_last(self.table, list(unknown.values()))
            for g, row in zip(unknown, found):
                self._last[g] = None if row is None else (window_position(row), state.decode(row[7], self.lanes))
            if self._held_slots:
                slot_ids = [s.id for s in self._held_slots]
                for g, loaded in zip(unknown, self.store.window_sets(self.table, list(unknown.values()), slot_ids)):
                    self._sets[g] = {i: sets.SetState(loaded[i]) for i in slot_ids}
        # A key is appended to when its first new event comes after the last one it holds.
        late: dict[bytes, list[WindowEvent]] = {}
        checked: set[bytes] = set()
        for g, e in zip(groups, events):
            if g not in checked:
                checked.add(g)
                last = self._last[g]
                if last is not None and window_position(e) <= last[0]:
                    late[g] = []
            if g in late:
                late[g].append(e)
        out: list[WindowEvent] = []
        latest: dict[bytes, tuple[tuple[object, ...], int]] = {}
        lanes, advance, encode = self.lanes, state.advance, state.encode
        changes = _SetChanges()
        for g, e in zip(groups, events):
            if g in late:
                continue
            if self.slots:
                self._add_to_sets(changes, g, e)
            last = self._last[g]
            s = advance(last[1] if last is not None else self._zero, lanes, e[5], e[6])
            self._last[g] = (window_position(e), s)
            out.append((*e[:7], encode(s), e[8]))
            held = latest.get(g)
            if held is None or e[4] > held[1]:
                latest[g] = (e[0], e[4])
        replaced: list[WindowEvent] = []
        for g, new in late.items():
            rows, kept = self._late(new)
            if self.slots:
                known = {window_position(h) for h in kept}
                for e in new:
                    if window_position(e) not in known:
                        known.add(window_position(e))
                        self._add_to_sets(changes, g, e)
            out.extend(rows)
            replaced.extend(kept)
            self._last[g] = (window_position(rows[-1]), state.decode(rows[-1][7], lanes))
            latest[g] = (new[0][0], max(e[4] for e in new))
        # If this write fails, the caches hold what did not land: the ingestor drops them
        # (StreamIngestor._apply_committed) and re-applies from the log.
        self.store.window_write(self.table, out, replaced, {key: vis for key, vis in latest.values()},
                                list(changes.added.values()), list(changes.removed.values()))
        if len(self._last) > CACHED_KEYS:
            self._evict()

    def _evict(self) -> None:
        """Forget the keys cached longest ago (an evicted key is read back when it comes again),
        so a writer's memory is bounded whatever the number of keys."""
        for g in list(self._last)[: len(self._last) - CACHED_KEYS // 2]:
            del self._last[g]
            self._sets.pop(g, None)

    def _late(self, new: list[WindowEvent]) -> tuple[list[WindowEvent], list[WindowEvent]]:
        """Re-state every held event of the key from the first new one on (exact, with reads)."""
        key = new[0][0]
        new.sort(key=window_position)
        first = window_position(new[0])
        held = self.store.window_read(self.table, [key], first[0] - 1, None)[0]
        earlier = [h for h in held if window_position(h) < first]  # same event time, before it
        if earlier:
            base = state.decode(earlier[-1][7], self.lanes)
        else:
            _, (blob,), _ = self.store.window_seek(self.table, [key], [first[0] - 1])[0]
            base = state.decode(blob, self.lanes)
        kept = [h for h in held if window_position(h) >= first]
        known = {window_position(h) for h in kept}
        merged = sorted([*kept, *(e for e in new if window_position(e) not in known)], key=window_position)
        return list(with_prefixes(self.lanes, merged, {encode_key(key): base})), kept
