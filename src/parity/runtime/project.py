"""The ``Project`` façade: the one object users and the CLI talk to.

>>> project = Project.load("my_project")
>>> project.apply()
>>> table = project.training_set(spine, ["user.credit_limit", "transaction.user.account_age_days"])
>>> project.materialize()
>>> project.query({"user_id": [1, 2]}, ["user.credit_limit"], with_status=True)
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from parity.define.access import Principal
from parity.define.sources import Source, StreamSource
from parity.errors import ConfigError, DataError, ParityError, StoreError
from parity.plan.catalog import Catalog
from parity.plan.nodes import Plan
from parity.plan.planner import plan as make_plan
from parity.ports.online_store import OnlineStore
from parity.ports.source import SourceReader, view_scan
from parity.registry.store import Diff, Registry
from parity.registry.versions import online_table
from parity.runtime import wiring
from parity.runtime.loader import load_definitions
from parity.runtime.loop import BackgroundLoop
from parity.runtime.settings import Settings, load_settings
from parity.semantics import calls
from parity.semantics.time import ensure_utc, from_micros, now_micros, to_micros

if TYPE_CHECKING:
    import pyarrow as pa

    from parity.connectors.http import HttpClient
    from parity.ingest.materialize import MaterializeReport, WindowReport
    from parity.ingest.stream import IngestReport, StreamIngestor
    from parity.monitor.feature_log import FeatureLogger
    from parity.monitor.skew import SkewReport
    from parity.online.engine import Entities, OnlineEngine, StepObserver, WithStatus
    from parity.online.result import QueryResult
    from parity.plan.access import AccessPolicy, PlanAccess
    from parity.ports.monitor_store import Baseline, MonitorStore
    from parity.runtime.spark import SparkTrainingSet

Progress = Callable[[str], None]
STATUS_SUFFIX = ":status"
PLAN_CACHE = 4096


def _quiet(message: str) -> None:
    return None


def _iso(micros: object) -> str:
    return from_micros(micros).isoformat() if isinstance(micros, int) else "none"


def _names(value: str | Sequence[str], what: str) -> list[str]:
    """A single name or a list of names (a string is one name, never its characters)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{what} must be a name or a list of names, not {type(value).__name__}")
    return list(value)


class Project:
    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.settings = settings
        self.table_of = {name: online_table(view) for name, view in catalog.views.items()}
        self.table_of.update({name: online_table(view) for name, view in catalog.window_views.items()})
        self._plans: dict[tuple[str, ...], Plan] = {}
        self._store: OnlineStore | None = None
        self._online: OnlineEngine | None = None
        self._readers: dict[str, SourceReader] = {}
        self._loop = BackgroundLoop()
        self._http: HttpClient | None = None
        self._ingestors: dict[str, StreamIngestor] = {}
        self._policy: AccessPolicy | None = None
        self._step_observer: StepObserver | None = None
        self._feature_log: FeatureLogger | None = None
        self._monitor: MonitorStore | None = None
        self._feature_log_lock = threading.Lock()
        self._closed = False
        self._versions_of: dict[int, tuple[Plan, dict[str, str]]] = {}  # per plan: each output's version

    # -- construction --------------------------------------------------------------------

    @classmethod
    def load(cls, root: str = ".") -> Project:
        settings = load_settings(root)
        return cls(Catalog(load_definitions(settings.definitions, settings.root)), settings)

    @classmethod
    def from_definitions(
        cls,
        definitions: Iterable[object],
        *,
        root: str = ".",
        online_store_path: str = ".parity/online.db",
        registry_path: str = ".parity/registry.db",
        online_store_type: str = "sqlite",
        online_store_url: str | None = None,
        online_store_namespace: str = "parity",
        feature_log_sample_rate: float = 0.0,
        record_baselines: bool = False,
        monitor_path: str = ".parity/monitor.db",
    ) -> Project:
        """A project from objects in hand (notebooks, tests), without a parity.toml; its served
        values are not logged unless ``feature_log_sample_rate`` says so, and its training sets
        record no baselines unless ``record_baselines`` (a deployment's do both)."""
        settings = Settings(
            root=root, name="inline", definitions="", online_store_type=online_store_type,
            online_store_path=online_store_path, registry_path=registry_path, online_store_url=online_store_url,
            online_store_namespace=online_store_namespace, feature_log_sample_rate=feature_log_sample_rate,
            record_baselines=record_baselines, monitor_path=monitor_path,
        )
        return cls(Catalog(definitions), settings)

    # -- planning ------------------------------------------------------------------------

    def plan(self, features: str | Sequence[str]) -> Plan:
        key = (features,) if isinstance(features, str) else tuple(features) if isinstance(features, list | tuple) else None
        found = self._plans.get(key) if key is not None else None  # the hot path: a plan asked for before
        if found is None:
            names = _names(features, "features")
            if len(self._plans) >= PLAN_CACHE:  # requests can spell plans without end: the oldest go
                del self._plans[next(iter(self._plans))]
            found = self._plans[tuple(names)] = make_plan(self.catalog, names)
        return found

    def explain(self, features: str | Sequence[str]) -> str:
        return self.plan(features).explain()

    # -- access ----------------------------------------------------------------------------

    def access_policy(self) -> AccessPolicy:
        if self._policy is None:
            from parity.plan.access import AccessPolicy

            self._policy = AccessPolicy(self.catalog)
        return self._policy

    def _access(self, principal: Principal | None, plan: Plan) -> PlanAccess | None:
        """None for the project's owner (no principal given); else the decision, or AccessDenied."""
        if principal is None:
            return None
        if not isinstance(principal, Principal):
            raise DataError(f"principal must be a parity Principal, not {type(principal).__name__}")
        return self.access_policy().check(principal, plan)

    def catalog_for(self, principal: Principal | None = None) -> list[dict[str, object]]:
        """The features ``principal`` may request (all, for the owner), with dtype, version,
        producer (``kind``: view, window or resolver; its ``namespace``; the ``source`` it reads;
        a window aggregate's ``window``), tags (the view's included), owner, description and access
        ("read" or "masked")."""
        from parity.define.windows import width_label
        from parity.registry.versions import Versions, metadata

        visible = None if principal is None else self.access_policy().visible(principal, self.plan)
        versions = Versions(self.catalog)
        out: list[dict[str, object]] = []
        for key, fd in sorted(self.catalog.features.items()):
            access = "read" if visible is None else visible.get(key)
            if access is None:
                continue
            entry: dict[str, object] = {
                "feature": fd.ref, "dtype": repr(fd.dtype), "version": versions.version(fd),
                "kind": "view" if fd.view else "window" if fd.window else "resolver", "namespace": fd.namespace,
                "entity": fd.entity.name, **metadata(fd), "tags": list(fd.tags), "access": access}
            holder = fd.view or fd.window
            if holder is not None:
                entry["source"] = holder.source.name
            if fd.aggregate is not None:
                entry["window"] = {"width": width_label(fd.width), "aggregation": fd.aggregate.aggregation.kind,
                                   "column": fd.aggregate.aggregation.column, "filtered": fd.aggregate.where is not None}
            out.append(entry)
        return out

    def entities_and_sources_for(self, features: list[dict[str, object]],
                                 principal: Principal | None = None) -> dict[str, list[dict[str, object]]]:
        """Beside ``catalog_for``'s features: the entities they are about (with their keys) and the
        sources they read, plus the stream sources the principal may push into — nothing about a
        source or entity none of its features touches."""
        entities = sorted({str(f["entity"]) for f in features})
        pushable = {name for name in self.catalog.stream_sources()
                    if principal is None or any(name in self.catalog.roles[r].push
                                                for r in principal.roles if r in self.catalog.roles)}
        names = sorted({str(f["source"]) for f in features if "source" in f} | pushable)
        by_name: dict[str, Source] = {v.source.name: v.source for v in self.catalog.views.values()}
        by_name.update({v.source.name: v.source for v in self.catalog.window_views.values()})
        return {
            "entities": [{"name": e, "keys": {k: repr(d) for k, d in self.catalog.entities[e].keys.items()}}
                         for e in entities],
            "sources": [{"name": n, "kind": type(by_name[n]).__name__, "push": n in pushable} for n in names],
        }

    # -- registry ------------------------------------------------------------------------

    def registry(self) -> Registry:
        return Registry(self.settings.resolve(self.settings.registry_path))

    def check_sources(self) -> list[str]:
        """Check every view's columns and types against its source without reading rows.

        A column that is missing or whose type its feature cannot read is an error; a source that
        cannot be reached now (a file not written yet, a database down) is returned as a warning.
        """
        warnings = []
        for name, view in self.catalog.views.items():
            try:
                self._reader(view.source).check(view_scan(view))
            except (ConfigError, StoreError) as exc:
                warnings.append(f"feature view {name!r}: source not checked: {exc}")
        return warnings

    def apply(self, *, dry_run: bool = False, check_sources: bool = True) -> Diff:
        """Record every feature's definition and version; returns what changed.

        Sources are checked first (``check_sources``): a definition their data cannot satisfy is
        refused before anything is recorded.
        """
        warnings = self.check_sources() if check_sources else []
        registry = self.registry()
        try:
            diff = registry.diff(self.catalog)[0] if dry_run else registry.apply(self.catalog)
        finally:
            registry.close()
        diff.warnings.extend(warnings)
        return diff

    # -- offline -------------------------------------------------------------------------

    def reader(self, source: Source) -> SourceReader:
        """The connector reading ``source`` (one per source, kept open)."""
        return self._reader(source)

    def _reader(self, source: Source) -> SourceReader:
        # One reader per source for the life of the project: it owns the source's connection pool.
        reader = self._readers.get(source.name)
        if reader is None:
            reader = self._readers[source.name] = wiring.reader_for(source, self.settings.root)
        return reader

    def _online_http(self) -> HttpClient:
        if self._http is None:
            self._http = wiring.http_client()
        return self._http

    def training_set(
        self,
        spine: object,
        features: str | Sequence[str],
        *,
        timestamp_column: str = "timestamp",
        key_columns: Mapping[str, str] | None = None,
        timezone: str | None = None,
        with_status: bool = False,
        progress: Progress = _quiet,
        principal: Principal | None = None,
        record_baseline: bool = True,
        partitions: int | None = None,
        engine: str = "local",
        spark: Any = None,
    ) -> pa.Table:
        """A point-in-time-correct training set as a ``pyarrow.Table``.

        One row per spine row, in spine order, every spine column unchanged, then one column per
        feature (named as requested) — and with ``with_status=True`` a ``<feature>:status`` column
        each (present, missing, expired or error, as online). With a ``principal``, the features
        its roles do not grant refuse the whole request (AccessDenied) and masked ones are null
        columns (status masked), as online. Rows whose resolver call failed hold
        the feature's default, as online; the table's metadata ``parity.fallbacks`` counts them per
        feature with the first error, and ``parity.no_event_time`` counts source rows skipped
        because their event time is null. When the project records baselines, the table's profile
        is kept as its features' baseline — unless ``record_baseline=False`` (a replay or an
        evaluation set that is not what the model trained on). ``partitions`` runs it in that many
        key partitions, one in memory at a time (default: ``[offline] partitions``, else as many as
        keep the largest source within ``[offline] memory_budget``); the answer is the same.
        ``engine="spark"`` runs it on Spark (``spark_training_set``) and collects it: the same table.
        """
        import pyarrow as pa

        if engine == "spark":
            return self.spark_training_set(
                spine, features, timestamp_column=timestamp_column, key_columns=key_columns, timezone=timezone,
                with_status=with_status, progress=progress, principal=principal, partitions=partitions, spark=spark,
            ).to_arrow()
        if engine != "local":
            raise ConfigError(f"engine {engine!r} is not known; use 'local' or 'spark'")

        from parity.offline.engine import OfflineEngine
        from parity.offline.spine import read_spine
        from parity.semantics.values import arrow_type

        refs = _names(features, "features")
        plan = self.plan(refs)
        access = self._access(principal, plan)  # before any data is read
        keys = {k: d for root, _ in plan.roots for k, d in self.catalog.entities[root].keys.items()}
        status_columns = [ref + STATUS_SUFFIX for ref in refs] if with_status else []
        spine_data = read_spine(
            spine, timestamp_column=timestamp_column, keys=keys, key_columns=key_columns,
            timezone=timezone, reserved=[*refs, *status_columns],
        )
        progress(f"spine: {spine_data.table.num_rows:,} rows; plan: {len(plan.steps)} steps")
        offline = OfflineEngine(self.catalog, self._reader, progress, http_client=wiring.http_client,
                                run_async=self._loop.run)
        result = offline.run(plan, spine_data.keys, spine_data.times_us, with_status=with_status,
                            partitions=lambda source: self._partitions_of(source, partitions))
        table = spine_data.table
        fallbacks: dict[str, dict[str, object]] = {}
        for ref, cid in plan.outputs:
            dtype = self.catalog.feature_at(self.catalog.parse(ref)).dtype
            table = table.append_column(ref, result.columns[cid].to_arrow().cast(arrow_type(dtype)))
            failed = result.fallbacks.get(cid)
            if failed:
                fallbacks[ref] = {"rows": len(failed), "first_error": failed[min(failed)]}
        if with_status:  # the engine gave every column a status
            for ref, cid in plan.outputs:
                table = table.append_column(ref + STATUS_SUFFIX, result.statuses[cid].to_arrow().cast(pa.string()))
        if access is not None:  # an error's detail can quote an input the principal may only use inside a plan
            for entry in fallbacks.values():
                entry["first_error"] = calls.public(str(entry["first_error"]))
        for ref in sorted(access.masked) if access else ():
            fallbacks.pop(ref, None)  # a first error could carry the value
            at = table.schema.get_field_index(ref)
            table = table.set_column(at, ref, pa.nulls(table.num_rows, table.schema.field(at).type))
            if with_status:
                at = table.schema.get_field_index(ref + STATUS_SUFFIX)
                table = table.set_column(at, ref + STATUS_SUFFIX, pa.array(["masked"] * table.num_rows, pa.string()))
        if record_baseline and self.settings.record_baselines and table.num_rows:
            from parity.runtime.baselines import record_baselines

            profiled = [ref for ref in refs if not (access and ref in access.masked)
                        and "pii" not in self.catalog.feature_at(self.catalog.parse(ref)).feature.tags]
            times = spine_data.times_us
            record_baselines(self.monitor_store(), table, profiled,
                             {ref: repr(self.catalog.feature_at(self.catalog.parse(ref)).dtype) for ref in profiled},
                             self._versions(plan), f"training set of {table.num_rows:,} rows, spine times "
                             f"{_iso(times.min())} to {_iso(times.max())}")
        metadata = dict(table.schema.metadata or {})
        metadata[b"parity.fallbacks"] = json.dumps(fallbacks).encode()
        metadata[b"parity.no_event_time"] = json.dumps(result.no_event_time, sort_keys=True).encode()
        return table.combine_chunks().replace_schema_metadata(metadata)

    def spark_training_set(
        self,
        spine: object,
        features: str | Sequence[str],
        *,
        timestamp_column: str = "timestamp",
        key_columns: Mapping[str, str] | None = None,
        timezone: str | None = None,
        with_status: bool = False,
        progress: Progress = _quiet,
        principal: Principal | None = None,
        partitions: int | None = None,
        spark: Any = None,
        out: str | None = None,
    ) -> SparkTrainingSet:
        """The training set on Apache Spark (``pip install "parity[spark]"``): the same plan, run by
        parity's own kernels on the executors, so the table equals the local one. ``spine`` is a
        Parquet path, a Spark DataFrame or a local table; ``spark`` a session (default: the active
        one, else ``[spark] master``). The result's ``frame`` is a lazy Spark DataFrame in spine
        order; with ``out`` it is written there as Parquet by the executors, nothing collected.
        Baselines are not recorded from a Spark run.
        """
        from parity.runtime import spark as on_spark

        refs = _names(features, "features")
        access = self._access(principal, self.plan(refs))  # before any data is read
        if self.settings.record_baselines:
            progress("baselines are not recorded from a Spark run (a local training set records one)")
        result = on_spark.training_set(self, spine, refs, timestamp_column=timestamp_column, key_columns=key_columns,
                                       timezone=timezone, with_status=with_status, progress=progress, access=access,
                                       partitions=partitions, spark=spark)
        return result.write(out) if out is not None else result

    # -- online --------------------------------------------------------------------------

    def monitor_store(self) -> MonitorStore:
        """Baselines and monitor results (``ports.monitor_store``; ``.parity/monitor.db``)."""
        if self._monitor is None:
            self._monitor = wiring.monitor_store(self.settings.resolve(self.settings.monitor_path))
        return self._monitor

    def baselines(self, feature: str) -> list[Baseline]:
        """The feature's baselines at its current version, oldest first (each training set records one)."""
        ref = self.catalog.parse(feature)
        from parity.registry.versions import Versions

        version = Versions(self.catalog).version(self.catalog.feature_at(ref))
        return self.monitor_store().baselines(ref.text, version)

    def online_store(self) -> OnlineStore:
        if self._store is None:
            self._store = wiring.online_store(
                self.settings.online_store_type, self.settings.resolve(self.settings.online_store_path),
                self.settings.online_store_url, self.settings.root, self.settings.online_store_namespace,
            )
        return self._store

    def materialize(
        self,
        *,
        incremental: bool = True,
        until: dt.datetime | None = None,
        views: str | Sequence[str] | None = None,
        progress: Progress = _quiet,
        partitions: int | None = None,
        engine: str = "local",
        spark: Any = None,
    ) -> list[MaterializeReport | WindowReport]:
        """Load each key's as-of value at ``until`` (default: now) into the online store, and
        rebuild the window indexes of window views from their sources' events. A feature view's
        source is read in ``partitions`` key partitions, one in memory at a time (default:
        ``[offline] partitions``, else as many as keep it within ``[offline] memory_budget``).
        ``engine="spark"`` chooses and writes feature views' rows on Spark's executors, into the
        Redis online store each of them opens (window indexes are rebuilt here)."""
        from parity.ingest.materialize import materialize, materialize_window_view

        if engine not in ("local", "spark"):
            raise ConfigError(f"engine {engine!r} is not known; use 'local' or 'spark'")

        until_us = now_micros() if until is None else to_micros(ensure_utc(until, what="materialize until"))
        known = [*self.catalog.views, *self.catalog.window_views]
        names = known if views is None else _names(views, "views")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise DataError(f"unknown view(s) {unknown}; known: {sorted(known)}")
        reports: list[MaterializeReport | WindowReport] = []
        feature_views = [self.catalog.views[n] for n in names if n in self.catalog.views]
        if engine == "spark":
            from parity.runtime import spark as on_spark

            reports.extend(on_spark.materialize(self, feature_views, until_us=until_us, incremental=incremental,
                                                progress=progress, partitions=partitions, spark=spark))
        else:
            reports.extend(materialize(
                feature_views, self.table_of, self._reader, self.online_store(), until_us=until_us,
                incremental=incremental, progress=progress,
                partitions=lambda view: self._partitions_of(view.source, partitions),
            ))
        for name in names:
            view = self.catalog.window_views.get(name)
            if view is None:
                continue
            if isinstance(view.source, StreamSource):
                # A stream-fed index is the stream's own: rebuilt from the whole log by its single
                # writer (this refuses while a consumer in another process holds the log).
                from parity.ingest.materialize import WindowReport

                held = self.ingestor(view.source.name).rebuild(name)
                progress(f"{name}: {held:,} logged events indexed for windows")
                reports.append(WindowReport(name, self.table_of[name], until_us, held))
                continue
            reports.append(materialize_window_view(view, self.table_of[name], self._reader(view.source),
                                                   self.online_store(), until_us=until_us, progress=progress,
                                                   partitions=self._partitions_of(view.source, partitions,
                                                                                  window_index=True)))
        return reports

    def _partitions_of(self, source: Source, asked: int | None, *, window_index: bool = False) -> int:
        """The key partitions a source is read in: as asked, else ``[offline] partitions``, else
        enough to keep it within the memory budget by what it says of its size without reading
        it (one, when it cannot say); a window index's rebuild holds more a row than a scan.
        The engines refuse a count below 1."""
        from parity.runtime.partitioning import BYTES_PER_ROW, BYTES_PER_WINDOW_EVENT, partitions_for

        if asked is not None:
            return asked
        per_row = BYTES_PER_WINDOW_EVENT if window_index else BYTES_PER_ROW
        return self.settings.offline_partitions or partitions_for(source, self._reader, self.settings.offline_memory_budget,
                                                                   per_row)

    def observe_steps(self, observer: StepObserver | None) -> None:
        """Tell ``observer`` what each step of every online query costs (the server's metrics)."""
        self._step_observer = observer
        if self._online is not None:
            self._online.observer = observer

    def _online_engine(self) -> OnlineEngine:
        if self._online is None:
            from parity.online.engine import OnlineEngine

            self._online = OnlineEngine(
                self.catalog, self.online_store(), self.table_of, reader_for=self._reader, http_client=self._online_http,
                observer=self._step_observer
            )
        return self._online

    def query(
        self, entities: Entities, features: str | Sequence[str], *, now: dt.datetime | None = None,
        with_status: bool = False, principal: Principal | None = None, request_id: str | None = None,
    ) -> QueryResult:
        """Feature values for many entities at once, with now = ``now`` (default: the current time).

        ``entities`` is a mapping of key columns (``{"user_id": [1, 2]}``), a mapping of one
        entity's keys (``{"user_id": 1}``) or a list of key rows. With a ``principal``, features
        its roles do not grant refuse the request (AccessDenied, before anything is read) and
        masked ones come back null with status masked (``define.access``). A sampled query's
        served values go to the feature log (``monitor.feature_log``) under ``request_id``.
        """
        now_us = now_micros() if now is None else to_micros(ensure_utc(now, what="query now"))
        engine, plan = self._online_engine(), self.plan(features)
        access = self._access(principal, plan)
        logged = self._sampled()
        statuses: WithStatus = True if with_status else "statuses" if logged else False
        if engine.needs_event_loop(plan):
            result: QueryResult = self._loop.run(engine.aexecute(plan, entities, now_us, statuses))
        else:
            result = engine.execute(plan, entities, now_us, statuses)
        return self._served(plan, entities, now_us, result, access, principal, logged, with_status, request_id)

    async def aquery(
        self, entities: Entities, features: str | Sequence[str], *, now: dt.datetime | None = None,
        with_status: bool = False, principal: Principal | None = None, request_id: str | None = None,
    ) -> QueryResult:
        now_us = now_micros() if now is None else to_micros(ensure_utc(now, what="query now"))
        engine, plan = self._online_engine(), self.plan(features)
        access = self._access(principal, plan)
        logged = self._sampled()
        statuses: WithStatus = True if with_status else "statuses" if logged else False
        if engine.needs_event_loop(plan):
            result: QueryResult = await self._loop.arun(engine.aexecute(plan, entities, now_us, statuses))
        elif engine.awaits_reads(plan):  # a network store: its round trip does not block the caller's loop
            result = await engine.aexecute_reads(plan, entities, now_us, statuses)
        else:
            result = engine.execute(plan, entities, now_us, statuses)
        return self._served(plan, entities, now_us, result, access, principal, logged, with_status, request_id)

    # -- the served-value log --------------------------------------------------------------------

    def feature_log(self) -> FeatureLogger | None:
        """The served-value log's writer (``monitor.feature_log``), or None when its sample rate is 0
        or the project is closed."""
        if self._feature_log is None and self.settings.feature_log_sample_rate > 0 and not self._closed:
            with self._feature_log_lock:  # queries on several threads start one writer, not one each
                if self._feature_log is None and not self._closed:
                    from parity.connectors.feature_log_parquet import ParquetFeatureLog
                    from parity.monitor.feature_log import FeatureLogger

                    sink = ParquetFeatureLog(self.settings.resolve("."),
                                             part_seconds=self.settings.feature_log_part_seconds)
                    self._feature_log = FeatureLogger(sink, sample_rate=self.settings.feature_log_sample_rate,
                                                      max_rows=self.settings.feature_log_max_rows)
        return self._feature_log

    def _sampled(self) -> bool:
        found = self._feature_log if self._feature_log is not None else self.feature_log()
        return found is not None and found.sampled()

    def _served(self, plan: Plan, entities: Entities, now_us: int, result: QueryResult, access: PlanAccess | None,
                principal: Principal | None, logged: bool, with_status: bool, request_id: str | None) -> QueryResult:
        """The answer as the caller may see it — and, when the query was sampled, as the log keeps it."""
        if access is not None:
            result = result.for_principal(access.masked, calls.public)
        if logged and self._feature_log is not None:
            from parity.online.engine import key_columns
            from parity.online.result import QueryResult

            n, columns = key_columns(entities)
            # the plan's entity keys only: a request's other fields (an email sent along) are not logged
            names = [k for _, ks in plan.roots for k in ks if k in columns]
            keys = [{k: columns[k][r] for k in names} for r in range(n)]
            statuses = result.statuses if result.details is None else [{ref: v.status for ref, v in row.items()}
                                                                       for row in result.details]
            try:
                self._feature_log.record(keys, result.features, self._versions(plan), result.rows, statuses, now_us,
                                         None if principal is None else principal.name, request_id)
            except (TypeError, ValueError):  # a key or value the log cannot write: the answer stands, counted
                self._feature_log.drop(n)
            if not with_status:
                result = QueryResult(result.features, result.rows, None)
        return result

    def skew(self, *, sample: int | None = 10_000, seed: int = 0, since: dt.datetime | None = None,
             until: dt.datetime | None = None, examples: int = 3, progress: Progress = _quiet) -> SkewReport:
        """Train/serve skew measured on the served-value log: a seeded sample of the logged rows
        served in [since, until), replayed through the offline engine at their request times, with
        per feature the mismatch rate, the likely causes and examples (``monitor.skew``)."""
        from parity.connectors.feature_log_parquet import ParquetFeatureLog
        from parity.runtime.skew import replay

        since_us = None if since is None else to_micros(ensure_utc(since, what="skew since"))
        until_us = None if until is None else to_micros(ensure_utc(until, what="skew until"))
        log = ParquetFeatureLog(self.settings.resolve(".")).read(since_us, until_us)
        return replay(self, log, sample=sample, seed=seed, examples=examples, progress=progress,
                      since_us=since_us, until_us=until_us)

    def feature_versions(self, plan: Plan) -> dict[str, str]:
        """Each output of ``plan`` (as requested) and its definition version now."""
        return dict(self._versions(plan))

    def _versions(self, plan: Plan) -> dict[str, str]:
        entry = self._versions_of.get(id(plan))
        if entry is None or entry[0] is not plan:
            from parity.registry.versions import Versions

            versions = Versions(self.catalog)
            if len(self._versions_of) >= PLAN_CACHE:
                del self._versions_of[next(iter(self._versions_of))]
            entry = self._versions_of[id(plan)] = (plan, {
                ref: versions.version(self.catalog.feature_at(self.catalog.parse(ref))) for ref, _ in plan.outputs})
        return entry[1]

    # -- streams -------------------------------------------------------------------------------

    def stream_source(self, name: str) -> StreamSource:
        sources = self.catalog.stream_sources()
        if name not in sources:
            raise DataError(f"unknown stream source {name!r}; the definitions use: {sorted(sources) or 'none'}")
        return sources[name]

    def ingestor(self, source: str, *, clock: Callable[[], int] | None = None) -> StreamIngestor:
        """The single writer of a stream source in this process (it holds the log's writer lock).
        ``clock`` (µs) stamps commits; tests replace it to control time."""
        found = self._ingestors.get(source)
        if found is None:
            from parity.connectors.event_log import DeadLetterFile, EventLog
            from parity.ingest.stream import StreamIngestor

            stream = self.stream_source(source)
            root = self.settings.resolve(".")
            windows = [(v, self.table_of[n]) for n, v in self.catalog.window_views.items() if v.source is stream]
            features = [(v, self.table_of[n]) for n, v in self.catalog.views.items() if v.source is stream]
            found = self._ingestors[source] = StreamIngestor(
                stream, EventLog(stream, root), DeadLetterFile(root, source), self.online_store(), windows, features,
                clock=clock or now_micros)
        return found

    def push(self, source: str, events: Mapping[str, object] | Sequence[Mapping[str, object]]) -> IngestReport:
        """Append events to a stream source, durably, and make them servable (one commit).

        Returns what happened: accepted, duplicates (by event id), dead-lettered (with reasons),
        late events applied or dead-lettered past ``max_lateness``.
        """
        from parity.ports.stream import Incoming

        return self.ingestor(source).ingest([Incoming(events, received_us=now_micros())])

    def close(self) -> None:
        """Close the feature log (what it buffered is written: a clean shutdown loses nothing), pools,
        the HTTP client, the I/O loop and the online store."""
        self._closed = True
        if self._feature_log is not None:
            self._feature_log.close()
            self._feature_log = None
        closers: list[Any] = [r.aclose() for r in self._readers.values() if hasattr(r, "aclose")]
        if self._http is not None:
            closers.append(self._http.aclose())
        for closer in closers:
            try:
                self._loop.run(closer)
            except (ParityError, OSError, RuntimeError):  # closing is best effort; nothing is left half-written
                pass
        self._readers.clear()
        for ingestor in self._ingestors.values():
            ingestor.close()
        self._ingestors.clear()
        self._http = None
        self._loop.close()
        if self._store is not None:
            self._store.close()
            self._store = None
            self._online = None
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
