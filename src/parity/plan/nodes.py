"""Plan nodes: frozen steps that both engines execute in order.

Columns are named by column ids: ``<root>.<hop>...<feature>`` for features and resolver outputs,
and the plain key name for the root entity's keys (they come from the spine or the request).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from parity.define.dtypes import DType


def _duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    text = "".join(f"{n}{unit}" for n, unit in parts if n)
    return text or f"{delta.total_seconds()}s"


def column_id(root: str, hops: tuple[str, ...], name: str) -> str:
    return ".".join((root, *hops, name))


@dataclass(frozen=True)
class Keys:
    """Where a path's entity keys come from: the root's key names, or columns of a parent path."""

    root: str
    hops: tuple[str, ...]
    entity: str
    key_names: tuple[str, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class LookupOutput:
    feature: str
    column: str  # source column
    dtype: DType
    max_age: dt.timedelta | None
    column_id: str


@dataclass(frozen=True)
class Lookup:
    """Read the as-of row of one feature view for the keys of one path."""

    keys: Keys
    view: str
    outputs: tuple[LookupOutput, ...]

    def __post_init__(self) -> None:
        if not self.outputs:  # an invariant of the planner, kept under python -O too
            raise ValueError(f"a lookup of view {self.view!r} must read at least one feature")


@dataclass(frozen=True)
class Compute:
    """Call one resolver with the columns of its inputs (and now), producing its outputs."""

    keys: Keys
    resolver: str
    inputs: tuple[tuple[str, str], ...]  # (parameter, column id)
    outputs: tuple[tuple[str, str, DType], ...]  # (feature, column id, dtype)
    wants_now: bool


@dataclass(frozen=True)
class WindowOutput:
    feature: str  # the aggregate's name in its window view
    width: int | None  # µs; None: lifetime
    dtype: DType
    column_id: str

    @property
    def label(self) -> str:
        return self.column_id.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class WindowRead:
    """Aggregate the events of one window view over (t − w, t] for the keys of one path."""

    keys: Keys
    view: str
    outputs: tuple[WindowOutput, ...]

    def __post_init__(self) -> None:
        if not self.outputs:
            raise ValueError(f"a window read of view {self.view!r} must compute at least one feature")


Step = Lookup | Compute | WindowRead


@dataclass(frozen=True)
class Plan:
    """Steps in dependency order; ``outputs`` maps each requested reference to its column id."""

    steps: tuple[Step, ...]
    outputs: tuple[tuple[str, str], ...]  # (reference as requested, column id)
    roots: tuple[tuple[str, tuple[str, ...]], ...]  # (root entity, its key names)

    def explain(self) -> str:
        lines = ["plan:"]
        for root, keys in self.roots:
            lines.append(f"  input {root} keys {', '.join(keys)} at time t")
        for i, step in enumerate(self.steps, 1):
            where = ".".join((step.keys.root, *step.keys.hops))
            keyed = ", ".join(step.keys.columns)
            if isinstance(step, Lookup):
                outs = ", ".join(f"{o.feature}{'' if o.max_age is None else f' (max_age {_duration(o.max_age)})'}" for o in step.outputs)
                lines.append(f"  {i}. lookup {where} [{step.keys.entity} by {keyed}] view {step.view}: {outs}")
            elif isinstance(step, WindowRead):
                outs = ", ".join(o.label for o in step.outputs)
                lines.append(f"  {i}. window {where} [{step.keys.entity} by {keyed}] view {step.view}, events in "
                             f"(t - w, t]: {outs}")
            else:
                ins = ", ".join(f"{p}={c}" for p, c in step.inputs) + (", now=t" if step.wants_now else "")
                outs = ", ".join(o for o, _, _ in step.outputs)
                lines.append(f"  {i}. resolve {where} [{step.keys.entity}] {step.resolver}({ins}) -> {outs}")
        lines.append("  output: " + ", ".join(ref for ref, _ in self.outputs))
        return "\n".join(lines)
