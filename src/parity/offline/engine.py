"""Execute a ``Plan`` over a spine: one output row per spine row, in spine order.

Source-backed lookups run the as-of rule (``semantics.asof``) vectorized; ``max_age`` comes from
``semantics.max_age``; Python resolvers are called once per row with now = the row's time and the
same Python values the online engine would give them (``semantics.values``), async ones under their
call policy (``semantics.calls``). A resolver call that fails yields the feature's default, exactly
as online, and the result records which rows fell back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import polars as pl

from parity.define.dtypes import DType
from parity.define.resolvers import Resolver
from parity.define.sources import Source
from parity.errors import DataError
from parity.plan.catalog import Catalog
from parity.plan.nodes import Compute, Keys, Lookup, Plan, WindowRead
from parity.ports.source import RepeatableReader, ScanRequest, SourceReader, view_scan, window_scan
from parity.semantics import asof, calls, max_age, partitions, values, visibility
from parity.semantics import windows as window_rule
from parity.semantics.ordering import EVENT, SEQUENCE
from parity.semantics.partitions import checked_count
from parity.semantics.time import from_micros
from parity.semantics.visibility import Window

Progress = Callable[[str], None]
T = TypeVar("T")
RunAsync = Callable[[Coroutine[Any, Any, Any]], Any]
_CHUNK = 1000  # async calls scheduled at once (each still under its policy's concurrency limit)
_STATUS = "\x00status"  # a kernel's status column beside its value column (no column id holds a NUL)
_POSITION = "\x00position"


def _no_progress(message: str) -> None:
    return None


@dataclass
class OfflineResult:
    """Every column the plan computes (aligned with the spine), what happened to each value, and
    the rows whose resolver call failed and fell back to the default."""

    columns: dict[str, pl.Series]
    statuses: dict[str, pl.Series] = field(default_factory=dict)  # filled when asked for
    fallbacks: dict[str, dict[int, str]] = field(default_factory=dict)  # column id -> {row: error}
    no_event_time: dict[str, int] = field(default_factory=dict)  # view -> rows skipped by its scan


class OfflineEngine:
    def __init__(
        self,
        catalog: Catalog,
        reader_for: Callable[[Source], SourceReader],
        progress: Progress = _no_progress,
        http_client: Callable[[], Any] | None = None,
        run_async: RunAsync | None = None,
    ) -> None:
        self.catalog = catalog
        self.reader_for = reader_for
        self.progress = progress
        self.http_client = http_client
        self.run_async = run_async or asyncio.run

    def _request(self, steps: Sequence[Lookup | WindowRead], until_us: int | None) -> ScanRequest:
        """The scan of one view for its ``steps``: the union of the features (or, for a window view,
        the columns of the aggregates) they read. Rows that become visible after the latest spine
        time can never be chosen: the scan leaves them out (pushed down to SQL sources)."""
        from parity.define.windows import feature_columns

        window, name = Window(until_us=until_us), steps[0].view
        if isinstance(steps[0], Lookup):
            return view_scan(self.catalog.views[name], list(dict.fromkeys(o.feature for s in steps for o in s.outputs)),
                             window)
        view = self.catalog.window_views[name]
        wanted = {o.feature for s in steps for o in s.outputs}
        return window_scan(view, set().union(*(feature_columns(a) for a in view.features if a.name in wanted)), window)

    def _ready(self, step: Lookup | WindowRead, rows: pl.DataFrame) -> asof.Prepared | pl.DataFrame:
        """A view's scanned rows made ready for its step's kernel: prepared for as-of choices, or
        sorted as window events."""
        source, keys = self._source_of(step), list(self._entity_keys(step))
        if isinstance(step, Lookup):
            return asof.prepare(rows, keys, uses_created=visibility.uses_created(source))
        return window_rule.sorted_events(rows, keys, uses_created=visibility.uses_created(source))

    def _read_whole(self, steps: Sequence[Lookup | WindowRead], until_us: int | None,
                    result: OfflineResult) -> dict[tuple[bool, str], asof.Prepared | pl.DataFrame]:
        """Read each view the ``steps`` use once, for all of them, made ready for their kernels
        (keyed by (whether a lookup, view): a feature view and a window view may share a name)."""
        groups: dict[tuple[bool, str], list[Lookup | WindowRead]] = {}
        for step in steps:
            groups.setdefault((isinstance(step, Lookup), step.view), []).append(step)
        return {key: self._ready(group[0], self._scan(key[1], self._source_of(group[0]),
                                                      self._request(group, until_us), result))
                for key, group in groups.items()}

    def _scan(self, name: str, source: Source, request: ScanRequest, result: OfflineResult) -> pl.DataFrame:
        """One view's scan, reported (rows read, rows skipped for having no event time)."""
        reader = self.reader_for(source)
        scan = reader.scan(request)
        skipped = f" ({scan.no_event_time:,} rows without an event time skipped: never visible)" if scan.no_event_time else ""
        self.progress(f"read {scan.rows.height:,} rows of {name} from {reader.describe()}{skipped}")
        result.no_event_time[name] = scan.no_event_time
        return scan.rows

    def run(self, plan: Plan, spine_keys: pl.DataFrame, times_us: pl.Series, *, with_status: bool = False,
            partitions: int | Callable[[Source], int] = 1) -> OfflineResult:
        """Values of every column the plan computes, aligned with the spine.

        ``spine_keys`` holds each root entity's key columns (checked and canonical, ``semantics.keys``);
        ``times_us`` is each row's time in UTC µs. ``partitions`` > 1 (for every source, or per
        source) runs a lookup or window step one key partition at a time (``semantics.partitions``):
        its view's rows are scanned one partition per pass, so at most one partition of the source
        is in memory; the kernels and the answers are the same.
        """
        count_of = partitions if callable(partitions) else (lambda source: partitions)
        reads = [step for step in plan.steps if isinstance(step, Lookup | WindowRead)]
        counts = {(isinstance(step, Lookup), step.view): count_of(self._source_of(step)) for step in reads}
        for n in counts.values():
            checked_count(n)
        result = OfflineResult({c: spine_keys[c] for c in spine_keys.columns})
        until = times_us.max() if len(times_us) else None
        # the views read whole are read once, up front, for all their steps
        ready = self._read_whole([s for s in reads if counts[(isinstance(s, Lookup), s.view)] == 1], until, result)  # type: ignore[arg-type]
        columns = result.columns
        dtypes: dict[str, DType] = {}
        for i, step in enumerate(plan.steps, 1):
            probes = self._probes(step.keys, columns, times_us)
            if isinstance(step, Lookup | WindowRead):
                key = (isinstance(step, Lookup), step.view)
                if counts[key] == 1:
                    made = self._kernel(step, ready[key], probes, with_status)
                else:
                    made = self._partitioned(step, probes, counts[key], until, result, with_status)  # type: ignore[arg-type]
                for out in step.outputs:
                    columns[out.column_id] = made[out.column_id]
                    dtypes[out.column_id] = out.dtype
                    if with_status:  # named as its column (a kernel keys it apart from the value)
                        result.statuses[out.column_id] = made[out.column_id + _STATUS].alias(out.column_id)
                what = "looked up" if isinstance(step, Lookup) else "aggregated"
                self.progress(f"step {i}/{len(plan.steps)}: {what} {step.view} for {len(probes):,} rows")
            else:
                self._compute(step, result, dtypes, times_us, probes, with_status)
                self.progress(f"step {i}/{len(plan.steps)}: ran resolver {step.resolver} on {len(probes):,} rows")
        return result

    def _source_of(self, step: Lookup | WindowRead) -> Source:
        return (self.catalog.views[step.view] if isinstance(step, Lookup) else self.catalog.window_views[step.view]).source

    def _entity_keys(self, step: Lookup | WindowRead) -> Mapping[str, DType]:
        view = self.catalog.views[step.view] if isinstance(step, Lookup) else self.catalog.window_views[step.view]
        return view.entity.keys

    def _kernel(self, step: Lookup | WindowRead, ready: asof.Prepared | pl.DataFrame, probes: pl.DataFrame,
                with_status: bool) -> dict[str, pl.Series]:
        if isinstance(step, Lookup):
            assert isinstance(ready, asof.Prepared)
            return self._lookup(step, ready, probes, with_status)
        assert isinstance(ready, pl.DataFrame)
        return self._aggregate(step, ready, probes, with_status)

    @classmethod
    def _lookup(cls, step: Lookup, frame: asof.Prepared, probes: pl.DataFrame, with_status: bool) -> dict[str, pl.Series]:
        """The as-of kernel of one lookup step over one set of rows and its probes (aligned)."""
        chosen = asof.choose(frame, probes, step.keys.key_names)
        return cls._looked_up(step, asof.gather(frame, chosen, [EVENT, *(o.feature for o in step.outputs)]), probes,
                              with_status)

    @staticmethod
    def _looked_up(step: Lookup, got: pl.DataFrame, probes: pl.DataFrame, with_status: bool) -> dict[str, pl.Series]:
        """A lookup step's columns from each probe's chosen row (EVENT and the features; null where
        none was chosen): the value, or null past its ``max_age``, and its status if asked."""
        got = got.with_columns(probes[asof.PROBE_TIME])
        made = {}
        for out in step.outputs:
            expired = max_age.expired_expr(pl.col(asof.PROBE_TIME), pl.col(EVENT), out.max_age)
            value = pl.when(expired).then(None).otherwise(pl.col(out.feature))
            made[out.column_id] = got.select(value.alias(out.column_id)).to_series()
            if with_status:
                status = (pl.when(pl.col(EVENT).is_null()).then(pl.lit("missing"))
                          .when(expired).then(pl.lit("expired")).otherwise(pl.lit("present")))
                made[out.column_id + _STATUS] = got.select(status.alias(out.column_id)).to_series()
        return made

    def _aggregate(self, step: WindowRead, events: pl.DataFrame, probes: pl.DataFrame,
                   with_status: bool) -> dict[str, pl.Series]:
        """The window kernel of one window step over one set of events and its probes (aligned)."""
        from parity.offline.windows import window_values

        view = self.catalog.window_views[step.view]
        made = dict(window_values(view, events, probes, step.outputs))
        if with_status:  # a null key (a relationship with no parent) has no window: missing, as online
            no_key = pl.any_horizontal([pl.col(k).is_null() for k in step.keys.key_names])
            status = pl.when(no_key).then(pl.lit("missing")).otherwise(pl.lit("present"))
            for wout in step.outputs:
                made[wout.column_id + _STATUS] = probes.select(status.alias(wout.column_id)).to_series()
        return made

    def _partitioned(self, step: Lookup | WindowRead, probes: pl.DataFrame, count: int, until_us: int | None,
                     result: OfflineResult, with_status: bool) -> dict[str, pl.Series]:
        """One step, one key partition at a time: the probes split by the partition of their key
        (the view's key dtypes: the rule its scan filters by), the view's rows scanned one partition
        per pass, the results put back in probe order."""
        request = self._request([step], until_us)
        reader = self.reader_for(self._source_of(step))
        of_probe = probes.select(partitions.partition_of(request.key_types, count)).to_series()
        if isinstance(step, Lookup) and getattr(reader, "repeatable_scans", False):
            return self._partitioned_lookup(step, probes, of_probe, count, request, cast(RepeatableReader, reader), result,
                                            with_status)
        pieces: list[pl.DataFrame] = []
        skipped = 0
        for index in range(count):
            positions = (of_probe == index).arg_true()
            scan = reader.scan(dataclasses.replace(request, partition=partitions.Partition(count, index)))
            skipped += scan.no_event_time
            made = self._kernel(step, self._ready(step, scan.rows), probes[positions], with_status)
            pieces.append(pl.DataFrame(made).with_columns(positions.alias(_POSITION)))
            self.progress(f"{step.view}: partition {index + 1}/{count}: {scan.rows.height:,} rows, "
                          f"{len(positions):,} probes")
        result.no_event_time[step.view] = skipped
        return dict(pl.concat(pieces).sort(_POSITION).drop(_POSITION).to_dict())

    def _partitioned_lookup(self, step: Lookup, probes: pl.DataFrame, of_probe: pl.Series, count: int,
                            request: ScanRequest, reader: RepeatableReader, result: OfflineResult,
                            with_status: bool) -> dict[str, pl.Series]:
        """A lookup step one key partition at a time, in two kinds of pass over a source whose scans
        repeat (``SourceReader.repeatable_scans``): per partition, only the keys and times are read
        and each probe's row chosen by the as-of rule; then one pass reads the features of the
        chosen rows alone. The features are decoded once instead of once per partition, and a
        partition in memory is four integers a row."""
        keyed = dataclasses.replace(request, columns={k: request.columns[k] for k in request.keys})
        before = reader.snapshot()
        picked = self._chosen_rows(step, probes, of_probe, count, keyed, reader, result)
        return self._looked_up(step, self._features_of(step, probes, picked, request, reader, before), probes,
                               with_status)

    def _chosen_rows(self, step: Lookup, probes: pl.DataFrame, of_probe: pl.Series, count: int, keyed: ScanRequest,
                     reader: RepeatableReader, result: OfflineResult) -> pl.Series:
        """Each probe's chosen row as its SEQUENCE (null where none), from the keys and times alone."""
        picked = pl.Series(SEQUENCE, [None] * len(probes), dtype=pl.Int64)
        skipped = 0
        try:
            spill = tempfile.TemporaryDirectory(prefix="parity-partitions-", ignore_cleanup_errors=True)
        except OSError as exc:
            raise DataError(f"{step.view}: cannot make a folder for its key partitions in {tempfile.gettempdir()}: "
                            f"{exc.strerror}; set TMPDIR to a folder parity can write") from None
        with spill as folder:
            for index, scan_of in enumerate(reader.scan_partitions(keyed, count, folder)):
                positions = (of_probe == index).arg_true()
                scan = scan_of()
                skipped += scan.no_event_time
                # narrow and cheap to copy; random reads across a scan's chunks are not
                ready = self._ready(step, scan.rows.rechunk())
                assert isinstance(ready, asof.Prepared)
                chosen = asof.choose(ready, probes[positions], step.keys.key_names)  # places in ready.rows
                picked.scatter(positions, ready.rows[SEQUENCE].gather(chosen))
                self.progress(f"{step.view}: partition {index + 1}/{count}: {scan.rows.height:,} rows, "
                              f"{len(positions):,} probes")
        result.no_event_time[step.view] = skipped
        return picked

    def _features_of(self, step: Lookup, probes: pl.DataFrame, picked: pl.Series, request: ScanRequest,
                     reader: RepeatableReader, before: object) -> pl.DataFrame:
        """EVENT and the features of each probe's chosen row, read in one pass of the chosen rows
        alone; refused when the source changed since its first pass (its files, or other rows, or
        other keys at the chosen places)."""
        wanted = picked.drop_nulls().unique().sort()
        rows = reader.scan(dataclasses.replace(request, sequences=wanted)).rows

        def changed() -> DataError:
            return DataError(f"{reader.describe()} changed while {step.view} was read ({len(wanted):,} rows chosen, "
                             f"{rows.height:,} found again); run the training set again once it is written")

        if rows.height != len(wanted) or not rows[SEQUENCE].equals(wanted, check_names=False):
            raise changed()
        at = picked.rank("dense") - 1  # each chosen row's place among the rows read, in SEQUENCE order
        keys = list(self._entity_keys(step))
        marks = [f"{_POSITION}{i}" for i in range(len(keys))]  # the keys, apart from any feature's name
        # The rows read are few: made contiguous (a scan gives ~1,000 chunks a column, and a random
        # gather across chunks is ~5x slower), a direct gather beats the ascending one of
        # ``asof.gather`` (10M probes from 9M rows × 11 columns: 1.05 s against 4.4 s).
        got = (rows.select(EVENT, *(o.feature for o in step.outputs), *(pl.col(k).alias(m) for k, m in zip(keys, marks)))
               .rechunk().select(pl.all().gather(at)))
        if any((got[m] != probes[p]).any() for m, p in zip(marks, step.keys.key_names)) or reader.snapshot() != before:
            raise changed()
        self.progress(f"{step.view}: read the features of the {rows.height:,} chosen rows")
        return got.drop(marks)

    @staticmethod
    def _probes(keys: Keys, columns: dict[str, pl.Series], times_us: pl.Series) -> pl.DataFrame:
        data = {name: columns[col] for name, col in zip(keys.key_names, keys.columns)}
        return pl.DataFrame(data).with_columns(times_us.alias(asof.PROBE_TIME))

    def _compute(
        self,
        step: Compute,
        result: OfflineResult,
        dtypes: dict[str, DType],
        times_us: pl.Series,
        probes: pl.DataFrame,
        with_status: bool,
    ) -> None:
        columns = result.columns
        res = self.catalog.resolvers[step.resolver]
        n = len(times_us)
        args: list[tuple[str, list[object]]] = []
        for param, cid in step.inputs:
            dtype = dtypes[cid]
            convert = values.from_storage(dtype)
            stored = columns[cid].cast(values.storage_polars_type(dtype)).to_list()
            args.append((param, [convert(v) for v in stored]))
        nows = [from_micros(t) for t in times_us.to_list()] if step.wants_now else None

        def call_kwargs(row: int) -> dict[str, object]:
            kwargs = {param: vals[row] for param, vals in args}
            if nows is not None:
                kwargs["now"] = nows[row]
            return kwargs

        def where(row: int) -> str:
            key = {k: probes[k][row] for k in step.keys.key_names}
            return f"resolver {res.name!r} (defined at {res.location}), spine row {row}, key {key}"

        failed: dict[int, str] = {}
        if res.is_async:
            results = self.run_async(_call_async(res, [call_kwargs(r) for r in range(n)], failed,
                                                 self.http_client if res.wants_http else None))
        else:
            results = []
            fn = res.fn
            for row in range(n):
                try:
                    results.append(fn(**call_kwargs(row)))
                except Exception as exc:  # noqa: BLE001 - a failing call falls back to the default, as online
                    failed[row] = calls.failure(res.name, exc)
                    results.append(None)
        n_out = len(step.outputs)
        split: list[tuple[object, ...]] = []
        for row, r in enumerate(results):
            if row in failed:
                split.append((None,) * n_out)
                continue
            try:
                split.append(calls.outputs_of(r, n_out))
            except DataError as exc:
                raise DataError(f"{where(row)}: {exc}") from None
        for j, (feature, cid, dtype) in enumerate(step.outputs):
            default = values.to_storage(dtype, res.outputs[j].default, where=f"default of feature {feature!r}")
            picked = [default if row in failed else parts[j] for row, parts in enumerate(split)]
            try:
                stored = [values.to_storage(dtype, r, where="") for r in picked]
            except DataError:
                # Find the offending row again, this time paying for a precise message.
                for row, r in enumerate(picked):
                    values.to_storage(dtype, r, where=f"{where(row)}, feature {feature!r}")
                raise
            series = pl.Series(cid, stored, dtype=values.storage_polars_type(dtype), strict=False)
            columns[cid] = series.cast(values.polars_type(dtype))
            dtypes[cid] = dtype
            if failed:
                result.fallbacks[cid] = failed
            if with_status:
                result.statuses[cid] = pl.Series(cid, ["error" if row in failed else "present" for row in range(n)])
        if failed:
            first = failed[min(failed)]
            self.progress(f"resolver {res.name}: {len(failed):,} of {n:,} rows fell back to the default ({first})")


async def _call_async(
    res: Resolver,
    kwargs_rows: Sequence[dict[str, object]],
    failed: dict[int, str],
    http_client: Callable[[], Any] | None,
) -> list[object]:
    """Every row's call under the resolver's policy, on a fresh guard (``semantics.calls``).

    Calls are started only as slots free up, so no call waits for a slot: each gets its whole
    timeout for the dependency itself, as a request to an idle service would online (queueing
    behind the rest of the training set is not something serving ever sees).
    """
    # The breaker protects live traffic; offline it would make which rows fall back depend on how
    # fast the rows before them failed, so a training set applies the rest of the policy only.
    guard = calls.Guard(f"resolver {res.name!r}", dataclasses.replace(res.policy, circuit_breaker=None))
    http = http_client() if http_client is not None else None
    out: list[object] = [None] * len(kwargs_rows)

    async def one(row: int) -> None:
        kwargs = kwargs_rows[row] if http is None else {**kwargs_rows[row], "http": http}
        try:
            out[row] = await guard.call(lambda: res.fn(**kwargs))  # type: ignore[arg-type,return-value]
        except Exception as exc:  # noqa: BLE001 - a failing call falls back to the default, as online
            failed[row] = calls.failure(res.name, exc)

    rows = iter(range(len(kwargs_rows)))

    async def worker() -> None:
        for row in rows:  # a shared iterator: each row is taken by exactly one worker
            await one(row)

    try:
        await asyncio.gather(*(worker() for _ in range(min(res.policy.concurrency or _CHUNK, len(kwargs_rows)))))
    finally:
        if http is not None:
            await http.aclose()
    return out
