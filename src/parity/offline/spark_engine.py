"""The offline engine on Apache Spark: the same plan, the same kernels, run on the executors.

Nothing here computes a value. The spine's rows and each step's source rows are tagged with their
key partition (``semantics.partitions``, the rule of the local partitioned engine), co-grouped by
it, and each co-group is handed to the local engine's own kernels (``OfflineEngine._ready`` and
``_kernel``: as-of choices and window aggregates) inside an Arrow UDF; a resolver step runs the
local engine's ``_compute`` over Arrow batches on the executors, with now = the row's time. So the
semantics cannot drift between the local engine and Spark: there is one implementation.

The frame the steps pass along holds, per spine row, its position (spine order), its time and the
columns computed so far (under plain names: a column id holds dots, which Spark reads as paths).
The spine's own columns stay in Spark, untouched, and are joined back at the end.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

from parity.define.dtypes import DType
from parity.define.sources import Source
from parity.errors import DataError
from parity.offline.engine import _STATUS, OfflineEngine, OfflineResult, Progress, _no_progress
from parity.offline.spine import read_spine
from parity.plan.catalog import Catalog
from parity.plan.nodes import Compute, Lookup, Plan, WindowRead
from parity.ports.distributed import (
    PART,
    DataFrame,
    DistributedRows,
    Keyed,
    Session,
    arrow_schema,
    carried,
    carried_iter,
    driver_errors,
    spark_schema,
    spark_type,
    to_spark,
)
from parity.ports.source import SourceReader
from parity.semantics import partitions as partition_rule
from parity.semantics.asof import PROBE_TIME
from parity.semantics.values import arrow_type

POSITION = "__parity_pos"  # a spine row's place: the result is put back in this order


def _no_reader(source: Source) -> SourceReader:
    raise AssertionError(f"an executor reads no source itself ({source.name})")


@dataclass
class SparkRun:
    """What a plan's run on Spark gives: a lazy frame (``POSITION``, ``PROBE_TIME`` and a column
    per column id, named by ``names``; statuses named by ``statuses``), and accumulators that hold,
    once the frame has been computed, each resolver output's fallbacks and each view's rows
    skipped for having no event time."""

    frame: DataFrame
    names: dict[str, str]
    statuses: dict[str, str] = field(default_factory=dict)
    # Keyed accumulators (a batch computed twice counts once): column id -> {batch: (rows, first
    # position, its error)}; view -> {batch: rows}
    failures: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, Any] = field(default_factory=dict)
    kernels: Any = None  # {(step, co-group or batch): CPU seconds in parity's kernels}
    cached: list[Any] = field(default_factory=list)  # frames kept in the cluster's memory until released

    def kernel_seconds(self) -> float:
        """Seconds the executors spent in parity's kernels (summed over tasks), once computed."""
        return float(sum(self.kernels.value.values())) if self.kernels is not None else 0.0

    def fallbacks(self) -> dict[str, tuple[int, int, str]]:
        """Per column id whose resolver fell back: (rows, first position, its error)."""
        out = {}
        for cid, acc in self.failures.items():
            batches = list(acc.value.values())
            if batches:
                first = min(batches, key=lambda b: b[1])
                out[cid] = (sum(b[0] for b in batches), first[1], first[2])
        return out

    def no_event_time(self) -> dict[str, int]:
        return {view: sum(acc.value.values()) for view, acc in self.skipped.items()}


def register_definitions(catalog: Catalog) -> None:
    """Ship the modules that define the catalog's resolvers (and their helpers) to the executors
    by value: a project's definitions are not installed there, parity is."""
    from pyspark import cloudpickle

    for resolver in catalog.resolvers.values():
        module = sys.modules.get(getattr(resolver.fn, "__module__", "") or "")
        if module is not None and module.__name__.split(".")[0] != "parity":
            cloudpickle.register_pickle_by_value(module)


class SparkEngine:
    def __init__(self, catalog: Catalog, rows_for: Callable[[Source], DistributedRows], session: Session,
                 progress: Progress = _no_progress, http_client: Callable[[], Any] | None = None) -> None:
        self.catalog = catalog
        self.rows_for = rows_for
        self.session = session
        self.progress = progress
        # the kernels the executors run: the local engine itself, without readers (they get rows)
        self.local = OfflineEngine(catalog, _no_reader, http_client=http_client)
        self._names = (f"__parity_c{i}" for i in itertools.count())  # apart from every key name

    # -- spine ---------------------------------------------------------------------------------

    def spine(self, positioned: DataFrame, *, timestamp_column: str, keys: Mapping[str, DType],
              key_columns: Mapping[str, str] | None, timezone: str | None, reserved: Sequence[str]) -> DataFrame:
        """The probes of a spine (a Spark frame with ``POSITION``): its keys checked and canonical
        and its times as µs, by ``offline.spine.read_spine`` on each batch (the local rule)."""
        from pyspark.sql.pandas.types import from_arrow_schema

        user = arrow_schema(positioned.drop(POSITION))

        def read(table: pa.Table) -> pl.DataFrame:
            spine = read_spine(table, timestamp_column=timestamp_column, keys=keys, key_columns=key_columns,
                               timezone=timezone, reserved=reserved)
            return spine.keys.with_columns(spine.times_us.alias(PROBE_TIME))

        target = spark_schema(pa.schema([pa.field(POSITION, pa.int64()),
                                         *read(user.empty_table()).to_arrow().schema]))

        def convert(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                table = pa.Table.from_batches([batch])
                got = read(table.drop_columns([POSITION])).with_columns(
                    pl.Series(POSITION, table[POSITION].combine_chunks(), dtype=pl.Int64))
                yield from to_spark(got.to_arrow(), target).to_batches()

        return positioned.mapInArrow(carried_iter(convert), from_arrow_schema(target))

    # -- the plan ------------------------------------------------------------------------------

    def run(self, plan: Plan, probes: DataFrame, *, with_status: bool = False,
            partitions: Callable[[Source], int] = lambda source: 2) -> SparkRun:
        """The plan over the probes of ``spine``; lazy: nothing runs until the frame is used."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        # kept once checked: the latest spine time is read from it first, then every step reads it
        probes = probes.persist(StorageLevel.MEMORY_AND_DISK)
        with driver_errors():
            until = probes.agg(F.max(PROBE_TIME)).collect()[0][0]
        names = {key: key for _, keys in plan.roots for key in keys}  # root keys keep their names
        run = SparkRun(probes, names, kernels=self.session.sparkContext.accumulator({}, Keyed()), cached=[probes])
        register_definitions(self.catalog)
        dtypes: dict[str, DType] = {}
        for i, step in enumerate(plan.steps, 1):
            for cid in self._made(step):
                names[cid] = next(self._names)
                if with_status:
                    run.statuses[cid] = names[cid] + "_status"
            if isinstance(step, Lookup | WindowRead):
                count = partition_rule.checked_count(partitions(self.local._source_of(step)))
                run.frame = self._read(step, i, run, until, count, with_status)
                for out in step.outputs:
                    dtypes[out.column_id] = out.dtype
                what = "look up" if isinstance(step, Lookup) else "aggregate"
                self.progress(f"step {i}/{len(plan.steps)}: {what} {step.view} in {count} key partitions")
            else:
                run.frame = self._resolve(step, i, run, dict(dtypes), with_status)
                for _, cid, dtype in step.outputs:
                    dtypes[cid] = dtype
                self.progress(f"step {i}/{len(plan.steps)}: resolver {step.resolver} on the executors")
        return run

    @staticmethod
    def _made(step: Lookup | WindowRead | Compute) -> list[str]:
        if isinstance(step, Compute):
            return [cid for _, cid, _ in step.outputs]
        return [out.column_id for out in step.outputs]

    def _schema_with(self, frame: DataFrame, step: Lookup | WindowRead | Compute, run: SparkRun,
                     with_status: bool) -> pa.Schema:
        """The frame's Arrow schema (as Spark takes it) with the step's outputs added."""
        outputs = ([(cid, dtype) for _, cid, dtype in step.outputs] if isinstance(step, Compute)
                   else [(out.column_id, out.dtype) for out in step.outputs])
        fields = list(arrow_schema(frame))
        fields += [pa.field(run.names[cid], spark_type(arrow_type(dtype))) for cid, dtype in outputs]
        if with_status:
            fields += [pa.field(run.statuses[cid], pa.string()) for cid, _ in outputs]
        return pa.schema(fields)

    def _read(self, step: Lookup | WindowRead, step_index: int, run: SparkRun, until: int | None, count: int,
              with_status: bool) -> DataFrame:
        """A lookup or window step: spine rows and the view's rows co-grouped by key partition, the
        local kernel run on each co-group."""
        from pyspark.sql.pandas.types import from_arrow_schema

        local, names, statuses, kernels = self.local, dict(run.names), dict(run.statuses), run.kernels
        request = local._request([step], until)
        key_types = request.key_types
        skipped = run.skipped.get(step.view) or self.session.sparkContext.accumulator({}, Keyed())
        run.skipped[step.view] = skipped
        key_of_probe = dict(zip(step.keys.key_names, (names[c] for c in step.keys.columns)))

        expected = partition_rule.fingerprint(key_types, count)

        def same_hash() -> None:
            here = partition_rule.fingerprint(key_types, count)
            if here != expected:
                raise DataError(f"an executor hashes keys into other partitions than the driver ({here} against "
                                f"{expected}): run the same Polars version ({pl.__version__} here) on every machine")

        def part_of(rows: pl.DataFrame) -> pl.Series:
            same_hash()
            return rows.select(partition_rule.partition_of(key_types, count).cast(pl.Int64)).to_series()

        rows = self.rows_for(local._source_of(step)).rows(self.session, request, skipped, part_of)

        def tagger(columns: Mapping[str, str]) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
            def tag(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
                same_hash()
                for batch in batches:
                    got = pl.from_arrow(batch)
                    assert isinstance(got, pl.DataFrame)
                    keyed = got.select(pl.col(col).alias(key) for key, col in columns.items())
                    part = keyed.select(partition_rule.partition_of(key_types, count).cast(pl.Int64)).to_series()
                    yield batch.append_column(PART, part.to_arrow())
            return tag

        def tagged(frame: DataFrame, columns: Mapping[str, str]) -> DataFrame:
            schema = from_arrow_schema(pa.schema([*arrow_schema(frame), pa.field(PART, pa.int64())]))
            return frame.mapInArrow(carried_iter(tagger(columns)), schema)

        target = self._schema_with(run.frame, step, run, with_status)

        def kernel(left: pa.Table, right: pa.Table) -> pa.Table:
            if left.num_rows == 0:
                return target.empty_table()
            started = time.process_time()
            part = left.column(PART)[0].as_py()
            frame = pl.from_arrow(left.drop_columns([PART]))
            source_rows = pl.from_arrow(right.drop_columns([PART]))
            assert isinstance(frame, pl.DataFrame) and isinstance(source_rows, pl.DataFrame)
            probes = frame.select([pl.col(col).alias(key) for key, col in key_of_probe.items()] + [pl.col(PROBE_TIME)])
            made = local._kernel(step, local._ready(step, source_rows), probes, with_status)
            added = [made[out.column_id].alias(names[out.column_id]) for out in step.outputs]
            if with_status:
                added += [made[out.column_id + _STATUS].alias(statuses[out.column_id]) for out in step.outputs]
            done = to_spark(frame.with_columns(added).to_arrow(), target)
            kernels.add({(step_index, part): time.process_time() - started})
            return done

        left = tagged(run.frame, key_of_probe).repartition(count, PART)
        right = rows.repartition(count, PART)  # tagged by the connector, in its reading pass
        return left.groupBy(PART).cogroup(right.groupBy(PART)).applyInArrow(carried(kernel), from_arrow_schema(target))

    def _resolve(self, step: Compute, step_index: int, run: SparkRun, dtypes: dict[str, DType],
                 with_status: bool) -> DataFrame:
        """A resolver step: the local engine's ``_compute`` over each Arrow batch, on the executors."""
        from pyspark.sql.pandas.types import from_arrow_schema

        local, names, statuses, kernels = self.local, dict(run.names), dict(run.statuses), run.kernels
        failures = self.session.sparkContext.accumulator({}, Keyed())
        for _, cid, _ in step.outputs:
            run.failures[cid] = failures
        target = self._schema_with(run.frame, step, run, with_status)
        needed = list(dict.fromkeys([*step.keys.columns, *(cid for _, cid in step.inputs)]))

        def compute(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                started = time.process_time()
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                result = OfflineResult({cid: frame[names[cid]] for cid in needed})
                times = frame[PROBE_TIME]
                probes = local._probes(step.keys, result.columns, times)
                local._compute(step, result, dict(dtypes), times, probes, with_status)
                added = [result.columns[cid].alias(names[cid]) for _, cid, _ in step.outputs]
                if with_status:
                    added += [result.statuses[cid].alias(statuses[cid]) for _, cid, _ in step.outputs]
                failed = result.fallbacks.get(step.outputs[0][1]) or {}
                if failed:  # keyed by the batch's first position: a batch computed twice counts once
                    positions = frame[POSITION]
                    row = min(failed, key=lambda r: positions[r])
                    failures.add({positions.min(): (len(failed), int(positions[row]), failed[row])})
                done = to_spark(frame.with_columns(added).to_arrow(), target)
                kernels.add({(step_index, frame[POSITION].min()): time.process_time() - started})
                yield from done.to_batches()

        return run.frame.mapInArrow(carried_iter(compute), from_arrow_schema(target))
