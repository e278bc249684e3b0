"""Window sets: how min, max, first, last and the distinct aggregates are read online with one
descent per aggregate, whatever the window's width (then, for count_distinct on SQLite and
approx_count_distinct, the window's distinct members).

When every event a key holds is visible at t (serving "now" always is; ``online.windows`` checks
it), the window (t − w, t] is a *suffix* of the key's events: those with event time > t − w. For
each such aggregate the index keeps an ordered set of some of its lane's events (ordered by
``ordering.ROW_ORDER``, like the index), chosen so that the suffix's answer sits at the set's edge:

- ``max`` (``min``): the events whose value is greater (less) than every later lane event's, by
  the total order of values (``windows.float_order_key`` for doubles). Their values fall (rise)
  along the set, so the first member after t − w is the suffix's max (min) — the last event holding
  it, which has the same value as any other. Random data keeps about ln n members; a series that
  only falls (rises) keeps them all.
- ``all`` (``first``, ``last``): every lane event; the first member after t − w, or the last one.
- ``distinct`` (``count_distinct``, ``last_n_distinct``, ``approx_count_distinct``): each distinct
  value's (``windows.canonical``) latest event. The suffix's distinct values are exactly the
  members after t − w; read in reverse row order they come latest first (``last_n_distinct``).

``approx_percentile`` keeps no set of events: its slot holds bucket-count checkpoints
(``semantics.window_histograms``), read with the "at" ask.

Adding an event — in order or late, anywhere in the key's events — changes a set by a few members
(``add_event``), so streams keep the sets as they keep prefix states; the answers equal the scan of
the same events (``online.windows.aggregate_value``), which the property tests check.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from parity.define.windows import WindowView
from parity.semantics import windows as rule

Position = tuple[int, int, int]  # (event time, created key, sequence): ordering.ROW_ORDER
Member = tuple[Position, object]  # a set member: the event's place and its value

# Per aggregate: its set's kind, and what a query reads of the set — the first member after t − w,
# the last, the last n (latest first), how many, or all of them.
KINDS = {"min": ("min", "first"), "max": ("max", "first"), "first": ("all", "first"), "last": ("all", "last"),
         "count_distinct": ("distinct", "count"), "last_n_distinct": ("distinct", "last_n"),
         "approx_count_distinct": ("distinct", "all")}


@dataclass(frozen=True)
class Slot:
    """One aggregate's set: its id (the aggregate's place in the view), kind, lane bit and column."""

    id: int
    kind: str
    bit: int
    column: int
    is_float: bool


def slots_of(view: WindowView) -> list[Slot]:
    columns = list(view.columns)
    slots = []
    for i, aggregate in enumerate(view.features):
        found = KINDS.get(aggregate.aggregation.kind)
        column = aggregate.aggregation.column
        if found is None or column is None:
            continue
        slots.append(Slot(i, found[0], 1 << i, columns.index(column), view.columns[column].name == "Float64"))
    return slots


class SetState:
    """A key's set of one slot, as its writer holds it (members in row order; for ``distinct``
    also each value's member). ``all`` sets are only added to, so nothing of them is held."""

    __slots__ = ("latest", "members")

    def __init__(self, members: Sequence[Member] = ()) -> None:
        self.members: list[Member] = list(members)
        # canonical(): a NaN read back from the store is a new object, and NaN != NaN
        self.latest: dict[object, Position] = {rule.canonical(value): pos for pos, value in self.members}


def add_event(slot: Slot, held: SetState, pos: Position, value: object) -> tuple[list[Member], list[Member]]:
    """Add one new lane event (its place is not in the key's events yet) to a key's set:
    returns the members added and the members removed, and updates ``held``."""
    if slot.kind == "all":
        return [(pos, value)], []
    if slot.kind == "distinct":
        value = rule.canonical(value)
        found = held.latest.get(value)
        if found is not None and found > pos:
            return [], []  # a later event of the same value stays its latest
        removed: list[Member] = []
        if found is not None:
            removed.append((found, value))
            del held.members[bisect_left(held.members, found, key=lambda m: m[0])]
        held.latest[value] = pos
        held.members.insert(bisect_left(held.members, pos, key=lambda m: m[0]), (pos, value))
        return [(pos, value)], removed
    # max keeps the members greater than every later lane event; min, less: the same with the
    # order reversed (min and max read ints only, so negating the key reverses it).
    sign = 1 if slot.kind == "max" else -1
    key = sign * rule.order_key(value, slot.is_float)
    members = held.members
    at = bisect_left(members, pos, key=lambda m: m[0])
    if at < len(members) and sign * rule.order_key(members[at][1], slot.is_float) >= key:
        return [], []  # the greatest of the later events is not less than it
    start = at
    while start > 0 and sign * rule.order_key(members[start - 1][1], slot.is_float) <= key:
        start -= 1
    removed = members[start:at]
    members[start:at] = [(pos, value)]
    return [(pos, value)], removed


def members_of(slot: Slot, events: Sequence[tuple[Position, object]]) -> list[Member]:
    """A key's set built from its lane events in row order (an index rebuild)."""
    if slot.kind == "all":
        return list(events)
    held = SetState()
    for pos, value in events:
        add_event(slot, held, pos, value)
    return held.members


# -- answers: what a set query returns for a window, lowered to the aggregate's value ---------------

def lower(kind: str, found: object) -> object:
    """The aggregate's value from what the store read (``KINDS``): None or one value, a count, or a
    list of values."""
    if kind in ("min", "max"):
        return rule.extreme(found)
    if kind == "approx_count_distinct":
        return rule.approx_distinct(found)  # type: ignore[arg-type]
    return found  # first, last, count_distinct; last_n_distinct: the values, latest first
