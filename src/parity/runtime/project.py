"""The ``Project`` façade: the one object users and the CLI talk to.

>>> project = Project.load("my_project")
>>> project.apply()
>>> table = project.training_set(spine, ["user.credit_limit", "transaction.user.account_age_days"])
>>> project.materialize()
>>> project.query({"user_id": [1, 2]}, ["user.credit_limit"], with_status=True)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence

from parity.errors import DataError
from parity.plan.catalog import Catalog
from parity.plan.nodes import Plan
from parity.plan.planner import plan as make_plan
from parity.registry.store import Diff, Registry
from parity.registry.versions import online_table
from parity.runtime import wiring
from parity.runtime.loader import load_definitions
from parity.runtime.loop import BackgroundLoop
from parity.runtime.settings import Settings, load_settings
from parity.semantics.time import ensure_utc, now_micros, to_micros

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    return None


class Project:
    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.settings = settings
        self.table_of = {name: online_table(view) for name, view in catalog.views.items()}
        self._plans: dict[tuple[str, ...], Plan] = {}
        self._store = None
        self._online = None
        self._readers: dict[str, object] = {}
        self._loop = BackgroundLoop()
        self._http = None

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
    ) -> Project:
        """A project from objects in hand (notebooks, tests), without a parity.toml."""
        settings = Settings(
            root=root, name="inline", definitions="", online_store_type=online_store_type,
            online_store_path=online_store_path, registry_path=registry_path, online_store_url=online_store_url,
            online_store_namespace=online_store_namespace,
        )
        return cls(Catalog(definitions), settings)

    # -- planning ------------------------------------------------------------------------

    def plan(self, features: Sequence[str]) -> Plan:
        key = tuple(features)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = make_plan(self.catalog, list(features))
        return found

    def explain(self, features: Sequence[str]) -> str:
        return self.plan(features).explain()

    # -- registry ------------------------------------------------------------------------

    def registry(self) -> Registry:
        return Registry(self.settings.resolve(self.settings.registry_path))

    def apply(self, *, dry_run: bool = False) -> Diff:
        """Record every feature's definition and version; returns what changed."""
        registry = self.registry()
        try:
            return registry.diff(self.catalog)[0] if dry_run else registry.apply(self.catalog)
        finally:
            registry.close()

    # -- offline -------------------------------------------------------------------------

    def _reader(self, source):  # type: ignore[no-untyped-def]
        # One reader per source for the life of the project: it owns the source's connection pool.
        reader = self._readers.get(source.name)
        if reader is None:
            reader = self._readers[source.name] = wiring.reader_for(source, self.settings.root)
        return reader

    def _online_http(self):  # type: ignore[no-untyped-def]
        if self._http is None:
            self._http = wiring.http_client()
        return self._http

    def training_set(
        self,
        spine: object,
        features: Sequence[str],
        *,
        timestamp_column: str = "timestamp",
        key_columns: Mapping[str, str] | None = None,
        timezone: str | None = None,
        progress: Progress = _quiet,
    ):  # type: ignore[no-untyped-def]
        """A point-in-time-correct training set as a ``pyarrow.Table``.

        One row per spine row, in spine order, every spine column unchanged, then one column per
        feature (named as requested).
        """
        from parity.offline.engine import OfflineEngine
        from parity.offline.spine import read_spine
        from parity.semantics.values import arrow_type

        plan = self.plan(features)
        keys = {k: d for root, _ in plan.roots for k, d in self.catalog.entities[root].keys.items()}
        spine_data = read_spine(
            spine, timestamp_column=timestamp_column, keys=keys, key_columns=key_columns,
            timezone=timezone, reserved=list(features),
        )
        progress(f"spine: {spine_data.table.num_rows:,} rows; plan: {len(plan.steps)} steps")
        engine = OfflineEngine(self.catalog, self._reader, progress, http_client=wiring.http_client)
        columns = engine.run(plan, spine_data.keys, spine_data.times_us)
        table = spine_data.table
        for ref, cid in plan.outputs:
            dtype = self.catalog.feature_at(self.catalog.parse(ref)).dtype
            table = table.append_column(ref, columns[cid].to_arrow().cast(arrow_type(dtype)))
        return table.combine_chunks()

    # -- online --------------------------------------------------------------------------

    def online_store(self):  # type: ignore[no-untyped-def]
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
        views: Sequence[str] | None = None,
        progress: Progress = _quiet,
    ):  # type: ignore[no-untyped-def]
        """Load each key's as-of value at ``until`` (default: now) into the online store."""
        from parity.ingest.materialize import materialize

        until_us = now_micros() if until is None else to_micros(ensure_utc(until, what="materialize until"))
        names = list(self.catalog.views) if views is None else list(views)
        unknown = [n for n in names if n not in self.catalog.views]
        if unknown:
            raise DataError(f"unknown feature view(s) {unknown}; known: {sorted(self.catalog.views)}")
        return materialize(
            [self.catalog.views[n] for n in names], self.table_of, self._reader, self.online_store(),
            until_us=until_us, incremental=incremental, progress=progress,
        )

    def _online_engine(self):  # type: ignore[no-untyped-def]
        if self._online is None:
            from parity.online.engine import OnlineEngine

            self._online = OnlineEngine(
                self.catalog, self.online_store(), self.table_of, reader_for=self._reader, http_client=self._online_http
            )
        return self._online

    def query(self, entities, features: Sequence[str], *, now: dt.datetime | None = None, with_status: bool = False):  # type: ignore[no-untyped-def]
        """Feature values for many entities at once, with now = ``now`` (default: the current time).

        ``entities`` is a mapping of key columns (``{"user_id": [1, 2]}``) or a list of key rows.
        """
        now_us = now_micros() if now is None else to_micros(ensure_utc(now, what="query now"))
        engine, plan = self._online_engine(), self.plan(features)
        if engine.needs_event_loop(plan):
            return self._loop.run(engine.aexecute(plan, entities, now_us, with_status))
        return engine.execute(plan, entities, now_us, with_status)

    async def aquery(self, entities, features: Sequence[str], *, now: dt.datetime | None = None, with_status: bool = False):  # type: ignore[no-untyped-def]
        now_us = now_micros() if now is None else to_micros(ensure_utc(now, what="query now"))
        engine, plan = self._online_engine(), self.plan(features)
        if engine.needs_event_loop(plan):
            return await self._loop.arun(engine.aexecute(plan, entities, now_us, with_status))
        return engine.execute(plan, entities, now_us, with_status)

    def close(self) -> None:
        """Close pools, the HTTP client, the I/O loop and the online store."""
        closers = [r.aclose() for r in self._readers.values() if hasattr(r, "aclose")]
        if self._http is not None:
            closers.append(self._http.aclose())
        for closer in closers:
            try:
                self._loop.run(closer)
            except Exception:  # noqa: BLE001, S110 - closing is best effort; nothing is left half-written
                pass
        self._readers.clear()
        self._http = None
        self._loop.close()
        if self._store is not None:
            self._store.close()
            self._store = None
            self._online = None
