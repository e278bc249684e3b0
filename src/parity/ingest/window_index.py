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
from itertools import chain

import polars as pl

from parity.define.windows import WindowView
from parity.ports.online_store import OnlineStore, SetMember, WindowEvent, window_position
from parity.semantics import values, windows
from parity.semantics import window_histograms as hist
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
                  running: dict[bytes, state.State] | None = None,
                  checkpoints: list[SetMember] | None = None) -> Iterator[WindowEvent]:
    """Events in row order per key (keys may interleave), each with its key's running prefix.
    ``running`` holds the prefixes to continue from, by encoded key, and is left holding each
    key's last; the histogram checkpoints the events make are appended to ``checkpoints``."""
    # Keys are grouped by their encoding, not the tuple: a NaN is never equal to itself.
    running = {} if running is None else running
    zero = state.zero(lanes)
    histograms = any(lane.histogram for lane in lanes)
    for e in events:
        group = encode_key(e[0])
        before = running.get(group) or zero
        s = state.advance(before, lanes, e[5], e[6])
        running[group] = s
        if histograms and checkpoints is not None:
            checkpoints.extend((e[0], slot, window_position(e), counts)
                               for slot, counts in state.checkpoints(lanes, before, s))
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


def rebuild(view: WindowView, table: str, store: OnlineStore, parts: Iterable[pl.DataFrame]) -> int:
    """Replace a window index, all or nothing, with the events of ``parts`` (each sorted as
    ``semantics.windows.sorted_events``, over keys no other part holds): one part's rows in
    memory at a time, as each is made only when the store asks for it."""
    lanes, _ = state.lanes_of(view)
    slots = sets.slots_of(view)

    def stated() -> Iterator[tuple[Iterable[WindowEvent], Iterable[SetMember]]]:
        for events in parts:
            rows = index_events(view, events)
            checkpoints: list[SetMember] = []  # filled as the events are stated: a store reads them first
            yield with_prefixes(lanes, rows, checkpoints=checkpoints), chain(set_members(slots, rows), checkpoints)

    return store.window_replace(table, stated())


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
        self._histograms = [(i, lane) for i, lane in enumerate(self.lanes) if lane.histogram]
        # A histogram lane's last checkpoint: the last member of its slot at or before a time.
        self._checkpoint_asks = [(lane.slot, "at", None, 0) for _, lane in self._histograms]

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
            bases = self.store.window_seek(self.table, list(unknown.values()), [], self._checkpoint_asks) \
                if self._histograms else [(None, [], [])] * len(unknown)
            for g, row, (_, _, checkpoints) in zip(unknown, found, bases):
                self._last[g] = None if row is None else (window_position(row),
                                                          self._with_bases(state.decode(row[7], self.lanes), checkpoints))
            if self._held_slots:
                slot_ids = [s.id for s in self._held_slots]
                for g, loaded in zip(unknown, self.store.window_sets(self.table, list(unknown.values()), slot_ids)):
                    self._sets[g] = {i: sets.SetState(loaded[i]) for i in slot_ids}
        # A key is appended to when its first new event comes after the last one it holds.
        cached = self._last
        late: dict[bytes, list[WindowEvent]] = {}
        first_of: dict[bytes, WindowEvent] = {}
        for g, e in zip(groups, events):
            first_of.setdefault(g, e)
        for g, e in first_of.items():
            last = cached[g]
            if last is not None and window_position(e) <= last[0]:
                late[g] = []
        if late:
            for g, e in zip(groups, events):
                if g in late:
                    late[g].append(e)
        out: list[WindowEvent] = []
        append = out.append
        latest: dict[bytes, tuple[tuple[object, ...], int]] = {}
        lanes, advance, encode, zero = self.lanes, state.advance, state.encode, self._zero
        slots, histograms = self.slots, self._histograms
        changes = _SetChanges()
        # The usual case, once per event: keep this loop's body small (it is most of a commit's Python).
        for g, e in zip(groups, events):
            if late and g in late:
                continue
            if slots:
                self._add_to_sets(changes, g, e)
            last = cached[g]
            before = last[1] if last is not None else zero
            s = advance(before, lanes, e[5], e[6])
            position = window_position(e)
            cached[g] = (position, s)
            if histograms:
                for slot, counts in state.checkpoints(lanes, before, s):
                    changes.apply(g, e[0], slot, [(position, counts)], [])
            append((e[0], e[1], e[2], e[3], e[4], e[5], e[6], encode(s), e[8]))
            held = latest.get(g)
            if held is None or e[4] > held[1]:
                latest[g] = (e[0], e[4])
        replaced: list[WindowEvent] = []
        for g, new in late.items():
            rows, kept, final = self._late(changes, g, new)
            if self.slots:
                known = {window_position(h) for h in kept}
                for e in new:
                    if window_position(e) not in known:
                        known.add(window_position(e))
                        self._add_to_sets(changes, g, e)
            out.extend(rows)
            replaced.extend(kept)
            self._last[g] = (window_position(rows[-1]), final)
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

    def _with_bases(self, s: state.State, checkpoints: Sequence[object]) -> state.State:
        """A decoded state with its histogram lanes' checkpoints (``window_histograms.with_base``)."""
        s = list(s)
        for (i, _), counts in zip(self._histograms, checkpoints):
            s[i] = hist.with_base(s[i], counts)  # type: ignore[arg-type]
        return s

    def _late(self, changes: _SetChanges, group: bytes, new: list[WindowEvent]
              ) -> tuple[list[WindowEvent], list[WindowEvent], state.State]:
        """Re-state every held event of the key from the first new one's event time on (exact,
        with reads), checkpoints included; returns the rows to write, the rows they replace and
        the key's last state."""
        key = new[0][0]
        new.sort(key=window_position)
        before = new[0][1] - 1  # every event at the first new one's time is re-stated
        held = self.store.window_read(self.table, [key], before, None)[0]
        _, (blob,), checkpoints = self.store.window_seek(
            self.table, [key], [before], [(slot, mode, before, n) for slot, mode, _, n in self._checkpoint_asks])[0]
        base = self._with_bases(state.decode(blob, self.lanes), checkpoints)
        known = {window_position(h) for h in held}
        merged = sorted([*held, *(e for e in new if window_position(e) not in known)], key=window_position)
        running = {group: base}
        made: list[SetMember] = []
        rows = list(with_prefixes(self.lanes, merged, running, made))
        if self._histograms:
            # The checkpoints after ``before`` are placed again: the old ones go, the new ones come.
            slots = [lane.slot for _, lane in self._histograms]
            for slot, members in self.store.window_sets(self.table, [key], slots, after_us=before)[0].items():
                changes.apply(group, key, slot, [], members)
            for _, slot, pos, counts in made:
                changes.apply(group, key, slot, [(pos, counts)], [])
        return rows, held, running[group]
