"""``parity``: init, apply, features, explain, training-set, materialize, query, stream, push,
freshness, skew, monitor, dead-letters, token, audit, serve.

Every command works on the project in the current folder (or ``-C DIR``). Errors print one clear
line and exit with status 2; long work prints progress to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from parity.define.sources import StreamSource
from parity.errors import ParityError, one_line

if TYPE_CHECKING:
    import polars as pl

    from parity.define.dtypes import DType
    from parity.runtime.project import Project

EXIT_ERROR = 2


class _Progress:
    def __init__(self, quiet: bool) -> None:
        self.start = time.perf_counter()
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.start:7.2f}s] {message}", file=sys.stderr, flush=True)


def _features(values: Sequence[str]) -> list[str]:
    out = [f.strip() for v in values for f in v.split(",") if f.strip()]
    if not out:
        raise ParityError("name at least one feature with --features (e.g. --features user.country,user.credit_limit)")
    return out


def _time(text: str | None, what: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ParityError(f"{what}: {text!r} is not an ISO-8601 time such as 2025-03-01T12:00:00+00:00") from None
    if value.tzinfo is None:
        raise ParityError(f"{what}: {text!r} has no time zone; add one, e.g. {text}+00:00")
    return value


def _template_dir() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.path.join(here, "examples", "fraud"),
                      os.path.join(os.path.dirname(os.path.dirname(here)), "examples", "fraud")):
        if os.path.isfile(os.path.join(candidate, "parity.toml")):
            return candidate
    raise ParityError("the bundled example is missing from this installation; reinstall parity")


def cmd_init(args: argparse.Namespace) -> int:
    target = os.path.abspath(args.directory)
    if args.users < 1:
        raise ParityError(f"--users {args.users}: give a positive number of users (e.g. --users 2000)")
    if os.path.exists(target) and not os.path.isdir(target):
        raise ParityError(f"{target} is a file; choose a new folder for the project")
    if os.path.exists(target) and os.listdir(target):
        raise ParityError(f"{target} exists and is not empty; choose a new folder")
    template = _template_dir()
    shutil.copytree(template, target, ignore=shutil.ignore_patterns("data", ".parity", "__pycache__"),
                    dirs_exist_ok=True)
    print(f"created project in {target}", file=sys.stderr)
    if not args.no_data:
        sys.path.insert(0, target)
        try:
            from importlib import import_module

            generate = import_module("generate")
            stats = generate.generate(os.path.join(target, "data"), users=args.users)
        finally:
            sys.path.remove(target)
            sys.modules.pop("generate", None)
        print(f"generated example data: {stats}", file=sys.stderr)
    print(f"next: cd {args.directory} && parity apply")
    return 0


def _project(args: argparse.Namespace) -> Project:
    from parity.runtime.project import Project

    return Project.load(args.project)


def cmd_apply(args: argparse.Namespace) -> int:
    project = _project(args)
    diff = project.apply(dry_run=args.dry_run)
    print(("would apply: " if args.dry_run else "applied: ") + diff.render())
    if not args.dry_run and project.catalog.roles:  # a policy is part of what was deployed: say which
        try:
            from parity.server.audit import AuditLog

            audit = AuditLog.of(project)
        except ParityError:  # without the server extra there is no trail to write to
            return 0
        audit.append(_operator(), "apply", "ok", policy=project.access_policy().version,
                     roles=sorted(project.catalog.roles), changes=diff.render())
        audit.close()
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    project = _project(args)
    from parity.registry.versions import Versions

    versions = Versions(project.catalog)
    rows = []
    for (_, _), fd in sorted(project.catalog.features.items()):
        kind = f"view {fd.view.name}" if fd.view else f"resolver {fd.resolver.name if fd.resolver else '?'}"
        rows.append((fd.ref, repr(fd.dtype), versions.version(fd), kind, ",".join(fd.feature.tags), fd.feature.description))
    if args.json:
        print(json.dumps([dict(zip(("feature", "dtype", "version", "from", "tags", "description"), r)) for r in rows], indent=2))
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(4)) + ("  [" + r[4] + "]" if r[4] else "") + ("  " + r[5] if r[5] else ""))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    print(_project(args).explain(_features(args.features)))
    return 0


def _key_columns(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, column = pair.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise ParityError(f"--key-column {pair!r}: write KEY=COLUMN, e.g. --key-column user_id=customer_id")
        out[key.strip()] = column.strip()
    return out


def _check_out(path: str) -> str:
    out = os.path.abspath(path)
    if os.path.isdir(out):
        raise ParityError(f"--out {path!r} is a folder; give the path of a Parquet file to write")
    folder = os.path.dirname(out)
    if not os.path.isdir(folder):
        raise ParityError(f"--out {path!r}: folder {folder} does not exist; create it first")
    return out


def cmd_training_set(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from parity.cli.partial import PartialFile

    if args.engine == "spark":
        return _training_set_on_spark(args)
    if args.master:
        raise ParityError("--master names a Spark cluster: add --engine spark")
    out = _check_out(args.out)
    key_columns = _key_columns(args.key_column)
    features = _features(args.features)
    progress = _Progress(args.quiet)
    project = _project(args)
    try:
        table = project.training_set(
            args.spine, features, timestamp_column=args.timestamp_column, key_columns=key_columns,
            timezone=args.timezone, with_status=args.with_status, progress=progress, partitions=args.partitions,
        )
    finally:
        project.close()
    fallbacks = json.loads((table.schema.metadata or {}).get(b"parity.fallbacks", b"{}"))
    for ref, info in fallbacks.items():
        print(f"warning: {ref}: {info['rows']:,} rows fell back to the feature's default ({info['first_error']}); "
              f"--with-status marks them", file=sys.stderr)
    with PartialFile(out) as partial:  # never leave a half-written training set behind
        pq.write_table(table, partial.path)
    progress(f"wrote {table.num_rows:,} rows x {table.num_columns} columns to {args.out}")
    return 0


def _training_set_on_spark(args: argparse.Namespace) -> int:
    """The training set on Spark, written by the executors as a folder of Parquet (nothing collected)."""
    out = os.path.abspath(args.out) if "://" not in args.out else args.out
    if "://" not in out:
        if os.path.exists(out):
            raise ParityError(f"--out {args.out!r} exists; on Spark the training set is a new folder of Parquet files")
        if not os.path.isdir(os.path.dirname(out)):
            raise ParityError(f"--out {args.out!r}: folder {os.path.dirname(out)} does not exist; create it first")
    progress = _Progress(args.quiet)
    project = _project(args)
    try:
        from parity.runtime.spark import session

        spark = session(args.master or project.settings.spark_master, project.settings.spark_conf)
        result = project.spark_training_set(
            args.spine, _features(args.features), timestamp_column=args.timestamp_column,
            key_columns=_key_columns(args.key_column), timezone=args.timezone, with_status=args.with_status,
            progress=progress, partitions=args.partitions, spark=spark, out=out,
        )
    finally:
        project.close()
    for ref, info in result.fallbacks().items():
        print(f"warning: {ref}: {info['rows']:,} rows fell back to the feature's default ({info['first_error']}); "
              f"--with-status marks them", file=sys.stderr)
    progress(f"wrote the training set to {args.out} (Parquet part files in spine order, written by Spark)")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    progress = _Progress(args.quiet)
    project = _project(args)
    until = _time(args.until, "--until")
    if args.master and args.engine != "spark":
        raise ParityError("--master names a Spark cluster: add --engine spark")
    try:
        spark = None
        if args.engine == "spark":
            from parity.runtime.spark import session

            spark = session(args.master or project.settings.spark_master, project.settings.spark_conf)
        reports = project.materialize(incremental=not args.full, until=until, views=args.view or None,
                                      progress=progress, engine=args.engine, spark=spark)
    finally:
        project.close()
    from parity.ingest.materialize import WindowReport

    for r in reports:
        if isinstance(r, WindowReport):
            skipped = f", {r.no_event_time:,} without an event time skipped" if r.no_event_time else ""
            print(f"{r.view}: window index rebuilt, {r.events:,} events{skipped}")
            continue
        mode = "full" if r.incremental_from_us is None else "incremental"
        skipped = f", {r.no_event_time:,} rows without an event time skipped" if r.no_event_time else ""
        why = f" (read in full: {r.full_because})" if r.full_because and not args.full else ""
        print(f"{r.view}: {mode}, {r.rows_read:,} rows read, {r.keys:,} keys, {r.written:,} written{skipped}{why}"
              + (" — QUARANTINED, nothing written" if r.quarantined else ""))
        for v in r.violations:
            print(f"  expectation broken: {v.describe()}")
    quarantined = [r.view for r in reports if not isinstance(r, WindowReport) and r.quarantined]
    if quarantined:
        print(f"error: quarantined {', '.join(quarantined)}: their batches broke expectations and were not "
              "written; fix the source and rerun", file=sys.stderr)
        return 1
    return 0


def _parse_entities(project: Project, args: argparse.Namespace) -> list[dict[str, object]]:
    from parity.define.dtypes import Date, Timestamp

    if args.entities:
        try:
            data = json.loads(args.entities)
        except json.JSONDecodeError as exc:
            raise ParityError(f"--entities is not valid JSON: {exc}") from None
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise ParityError('--entities must be a JSON object or a list of objects, e.g. [{"user_id": 1}]')
        # JSON has no dates or times: ISO text for Date and Timestamp keys is read as such
        key_types = {k: d for e in project.catalog.entities.values() for k, d in e.keys.items()}
        return [{k: _key_text(k, v, key_types.get(k), "--entities") if isinstance(v, str) and key_types.get(k) in
                 (Date, Timestamp) else v for k, v in row.items()} for row in data]  # [] asks for nothing
    key_types = {k: d for e in project.catalog.entities.values() for k, d in e.keys.items()}
    rows = []
    for text in args.entity:
        row: dict[str, object] = {}
        for part in text.split(","):
            if "=" not in part:
                raise ParityError(f"--entity {text!r}: write key=value pairs, e.g. --entity user_id=42")
            key, value = (s.strip() for s in part.split("=", 1))
            row[key] = _key_text(key, value, key_types.get(key), f"--entity {text!r}")
        rows.append(row)
    if not rows:
        raise ParityError("give the entities with --entity user_id=42 (repeatable) or --entities '<json>'")
    return rows


def _key_text(key: str, text: str, dtype: DType | None, where: str) -> object:
    """A key given as text on the command line, as the value its dtype takes (semantics.keys then
    checks it like any request key)."""
    name = dtype.name if dtype is not None else "String"
    try:
        if name == "Int64":
            return int(text)
        if name == "Float64":
            return float(text)
        if name == "Bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if name == "Date":
            return dt.date.fromisoformat(text)
        if name == "Timestamp":
            stamp = dt.datetime.fromisoformat(text)
            if stamp.tzinfo is None:
                raise ParityError(f"{where}: key {key!r} {text!r} has no time zone; add one, e.g. {text}+00:00")
            return stamp
    except ValueError:
        raise ParityError(f"{where}: key {key!r} is a {name} key; {text!r} is not one") from None
    return text


def cmd_query(args: argparse.Namespace) -> int:
    features = _features(args.features)
    now = _time(args.now, "--now")
    project = _project(args)
    try:
        result = project.query(_parse_entities(project, args), features, now=now, with_status=args.status)
    finally:
        project.close()
    out: list[dict[str, object]] = []
    for i, row in enumerate(result.rows):
        if args.status and result.details is not None:
            out.append({ref: {"value": v.value, "status": v.status,
                              "event_time": v.event_time.isoformat() if v.event_time else None,
                              **({"error": v.error} if v.error else {})} for ref, v in result.details[i].items()})
        else:
            out.append(row)
    from parity.semantics.wire import to_json

    print(json.dumps(to_json(out), indent=2, allow_nan=False))
    return 0


def _stream_sources(project: Project, names: Sequence[str] | None) -> list[StreamSource]:
    if names:
        return [project.stream_source(n) for n in names]
    found: dict[str, StreamSource] = {}
    used = [v.source for v in project.catalog.views.values()] + [v.source for v in project.catalog.window_views.values()]
    for source in used:
        if isinstance(source, StreamSource) and (source.nats is not None or source.mqtt is not None):
            found[source.name] = source
    if not found:
        raise ParityError("no stream source with a transport (nats= or mqtt=) in the definitions")
    return list(found.values())


def cmd_stream(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from parity.runtime.streaming import consume_all

    progress = _Progress(args.quiet)
    project = _project(args)
    loop = asyncio.new_event_loop()
    task = None

    def stop(*_: object) -> None:  # SIGTERM: finish the batch in hand, close cleanly
        if task is not None:
            loop.call_soon_threadsafe(task.cancel)

    signal.signal(signal.SIGTERM, stop)
    try:
        sources = _stream_sources(project, args.source)
        task = loop.create_task(consume_all(project, sources, idle_exit=args.idle_exit, progress=progress))
        try:
            totals = loop.run_until_complete(task)
        except asyncio.CancelledError:
            return 0
        for source, total in zip(sources, totals):
            print(f"{source.name}: {total['accepted']:,} accepted, {total['duplicates']:,} duplicates, "
                  f"{total['dead']:,} dead-lettered ({total['late_dead']:,} too late), "
                  f"{total['late_applied']:,} late applied"
                  + (f", {total['warned']:,} applied that broke an expectation" if total["warned"] else ""))
    finally:
        loop.close()
        project.close()
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    project = _project(args)
    try:
        if args.events == "-":
            text = sys.stdin.read()
        else:
            with open(args.events, encoding="utf-8") as handle:
                text = handle.read()
        events = [json.loads(line) for line in text.splitlines() if line.strip()]
        report = project.push(args.source, events)
    except (OSError, ValueError) as exc:
        raise ParityError(f"--events {args.events}: {exc}") from None
    finally:
        project.close()
    print(json.dumps(report.__dict__))
    return 0


def cmd_freshness(args: argparse.Namespace) -> int:
    from parity.runtime.freshness import freshness_path

    project = _project(args)
    try:
        names = args.source or [s.name for s in _stream_sources(project, None)]
        for name in names:
            project.stream_source(name)
            path = freshness_path(project.settings.root, name)
            if not os.path.exists(path):
                print(f"{name}: no freshness yet (run 'parity stream')")
                continue
            with open(path, encoding="utf-8") as handle:
                stats = json.load(handle)
            parts = []
            for label, key in (("event->servable", "event_to_servable"), ("receive->servable", "receive_to_servable")):
                if stats.get(key):
                    parts.append(f"{label} p50 {stats[key]['p50_ms']:.1f} ms p99 {stats[key]['p99_ms']:.1f} ms")
            lag = stats.get("consumer_lag")
            parts.append(f"consumer lag {lag if lag is not None else 'unknown'}")
            print(f"{name}: " + ", ".join(parts) + f" (log at {stats.get('last_seq')})")
            for what, n in sorted((stats.get("expectations_broken") or {}).items()):
                print(f"  {n:,} applied events broke {what} (on_violation='warn')")
    finally:
        project.close()
    return 0


def cmd_skew(args: argparse.Namespace) -> int:
    project = _project(args)
    try:
        report = project.skew(sample=None if args.sample == 0 else args.sample, seed=args.seed,
                              since=_time(args.since, "--since"), until=_time(args.until, "--until"),
                              examples=args.examples, progress=_Progress(args.quiet))
    finally:
        project.close()
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print("\n".join(report.lines()))
    return 1 if args.fail and report.mismatches else 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from parity.connectors.feature_log_parquet import ParquetFeatureLog
    from parity.define.windows import parse_width
    from parity.runtime.monitoring import watch_log

    bucket = parse_width(args.bucket, "--bucket")
    if bucket is None:
        raise ParityError("--bucket: give a length of time such as 1h or 30m, not lifetime")
    since = None if args.since is None else _micros(args.since, "--since")
    until = None if args.until is None else _micros(args.until, "--until")
    reference = None
    if args.reference_since or args.reference_until:
        if not (args.reference_since and args.reference_until):
            raise ParityError("--reference-since and --reference-until go together: the past window to compare with")
        reference = (_micros(args.reference_since, "--reference-since"), _micros(args.reference_until, "--reference-until"))
        if reference[1] <= reference[0]:
            raise ParityError("--reference-until must be after --reference-since")
    if args.reference_file and reference is not None:
        raise ParityError("give --reference-file or --reference-since/--reference-until, not both")
    project = _project(args)
    try:
        import polars as pl

        log = ParquetFeatureLog(project.settings.resolve("."))
        past = None
        if reference is not None:
            frame = pl.from_arrow(log.read(*reference))
            assert isinstance(frame, pl.DataFrame)
            past = frame.filter(pl.col("served_at_us").is_between(reference[0], reference[1], closed="left"))
        fixed = None
        if args.reference_file:
            fixed = (_read_reference(args.reference_file), f"reference file {args.reference_file}")
        run = watch_log(project, log.read(since, until), since_us=since,
                        until_us=until, bucket_us=bucket, features=_features(args.features) if args.features else None,
                        record=not args.no_record and reference is None and fixed is None, reference=past,
                        fixed_reference=fixed)
        skew = None
        if args.skew:
            skew = project.skew(sample=args.skew_sample or None, since=None if since is None else _time(args.since, "--since"),
                                until=None if until is None else _time(args.until, "--until")).to_dict()
        if args.html:
            from parity.monitor.report import render

            text = render(run.watches, title=f"parity monitor: {project.settings.name}",
                          generated_at=dt.datetime.now(dt.UTC), skew=skew, freshness=_freshness(project),
                          views=run.freshness)
            tmp = f"{args.html}.partial-{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, args.html)
    finally:
        project.close()
    if args.json:
        print(json.dumps({"since_us": run.since_us, "until_us": run.until_us, "bucket_us": run.bucket_us,
                          "rows": run.rows, "features": [{"feature": w.feature, "version": w.version,
                                                          "status": w.status, "served": w.served,
                                                          "alarms": [{"metric": m, "window": list(win),
                                                                      "value": r.value, "threshold": r.threshold}
                                                                     for m, win, r in w.alarms()]}
                                                         for w in run.watches], "skew": skew}))
    else:
        print("\n".join(run.lines()))
        if skew is not None:
            print(f"skew: {skew['mismatches']:,} mismatches in {skew['rows']:,} replayed rows")
        if args.html:
            print(f"report: {args.html}")
    breached = (any(w.status in ("drift", "breach") for w in run.watches) or any(f[4] for f in run.freshness)
                or bool(skew and skew["mismatches"]))
    return 1 if args.fail and breached else 0


def _read_reference(path: str) -> pl.DataFrame:
    """A fixed drift reference: a Parquet file (a training set's, or any table). Parquet only: its
    columns carry their types, where a CSV's would be guessed (a String feature of '001' read as
    a number)."""
    import polars as pl

    try:
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ParityError(f"--reference-file {path}: cannot read it as Parquet ({one_line(str(exc))}); "
                          "give a Parquet file, e.g. one written by `parity training-set --out`") from None


def _freshness(project: Project) -> dict[str, dict[str, object]]:
    from parity.runtime.freshness import freshness_path

    found = {}
    used = [v.source for v in project.catalog.views.values()] + [v.source for v in project.catalog.window_views.values()]
    for source in used:
        if not isinstance(source, StreamSource):
            continue
        path = freshness_path(project.settings.root, source.name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                found[source.name] = json.load(handle)
    return found


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from parity.connectors.event_log import read_dead_letters

    project = _project(args)
    try:
        project.stream_source(args.source)
        for i, letter in enumerate(read_dead_letters(project.settings.root, args.source)):
            if i >= args.limit:
                break
            print(json.dumps(letter))
    finally:
        project.close()
    return 0


def _when(micros: int | None) -> str:
    if micros is None:
        return "-"
    return dt.datetime.fromtimestamp(micros / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_token(args: argparse.Namespace) -> int:
    from parity.semantics.time import now_micros

    project = _project(args)
    from parity.server.audit import AuditLog
    from parity.server.tokens import TokenStore

    store, audit = TokenStore.of(project), AuditLog.of(project)
    try:
        if args.action == "create":
            unknown = sorted(set(args.role) - set(project.catalog.roles))
            if unknown:
                raise ParityError(f"--role {unknown[0]!r} is not a role of the definitions; defined: "
                                  f"{', '.join(sorted(project.catalog.roles)) or 'none (add pt.Role(...))'}")
            if args.expires_days is not None and not 0 < args.expires_days <= 36_500:  # NaN fails this too
                raise ParityError("--expires-days must be a number of days between 0 and 36500 (100 years)")
            expires = None if args.expires_days is None else now_micros() + int(args.expires_days * 86_400_000_000)
            token, info = store.create(args.principal, args.role, expires_us=expires)
            audit.append(_operator(), "token.create", "ok", token=info.id, for_principal=info.principal,
                         roles=list(info.roles), expires=info.expires_us)
            print(f"created token {info.id} for {info.principal} (roles: {', '.join(info.roles) or 'none'}; "
                  f"expires {_when(info.expires_us)})", file=sys.stderr)
            print("this is the only time it is shown; keep it in a secret store:", file=sys.stderr)
            print(token)
        elif args.action == "list":
            rows = store.list()
            if args.json:
                print(json.dumps([{"id": t.id, "principal": t.principal, "roles": list(t.roles),
                                   "created": _when(t.created_us), "expires": _when(t.expires_us),
                                   "revoked": _when(t.revoked_us), "last_used": _when(t.last_used_us)} for t in rows]))
            for t in [] if args.json else rows:
                state = f"revoked {_when(t.revoked_us)}" if t.revoked_us else f"expires {_when(t.expires_us)}"
                print(f"{t.id}  {t.principal}  roles={','.join(t.roles)}  created {_when(t.created_us)}  {state}  "
                      f"last used {_when(t.last_used_us)}")
        else:
            info = store.revoke(args.id)
            audit.append(_operator(), "token.revoke", "ok", token=info.id, for_principal=info.principal)
            print(f"revoked token {info.id} of {info.principal}")
    finally:
        audit.close()  # written and signed before the command returns
        store.close()
        project.close()
    return 0


def _operator() -> str:
    """Who ran a CLI command, for the audit trail: the operating-system user."""
    import getpass

    try:
        return "os:" + getpass.getuser()
    except (KeyError, OSError):
        return f"os:uid{os.getuid()}"


def cmd_audit(args: argparse.Namespace) -> int:
    from parity.server.audit import AuditPaths, search, verify

    project = _project(args)
    project.close()
    paths = AuditPaths.for_root(project.settings.resolve(".parity"))  # read only: no writer, no key made
    if args.action == "verify":
        pem = None
        if args.public_key:
            with open(args.public_key, "rb") as fh:
                pem = fh.read()
        verdict = verify(paths, pem)
        for problem in verdict.problems:
            print(f"audit: {problem}", file=sys.stderr)
        unsigned = verdict.records - verdict.signed_through
        print(f"{verdict.records:,} records chained, {verdict.checkpoints:,} checkpoints, signed through record "
              f"{verdict.signed_through:,}" + (f" ({unsigned:,} newer records not yet signed)" if unsigned else "")
              + (": OK" if verdict.ok else ": FAILED"))
        return 0 if verdict.ok else 1
    since = None if args.since is None else _micros(args.since, "--since")
    until = None if args.until is None else _micros(args.until, "--until")
    for i, record in enumerate(search(paths, principal=args.principal, action=args.what, feature=args.feature,
                                      outcome=args.outcome, since_us=since, until_us=until)):
        if i >= args.limit:
            break
        print(json.dumps(record))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of 1 or more")
    return value


def _micros(text: str, flag: str) -> int:
    from parity.semantics.time import parse_iso, to_micros

    try:
        value = parse_iso(text)
    except ValueError:
        value = None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise ParityError(f"{flag} {text!r}: give an ISO-8601 time with a zone, e.g. 2026-01-31T00:00:00Z")
    return to_micros(value)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        from parity.errors import MissingExtraError

        raise MissingExtraError("uvicorn", "server") from None
    project = _project(args)  # fail here, with exit 2, on definitions that do not load
    project.close()
    os.environ["PARITY_PROJECT"] = os.path.abspath(args.project)
    # The workers' metrics live in one fresh folder, summed by every scrape (server.metrics).
    metrics_dir = project.settings.resolve(os.path.join(".parity", "metrics", f"serve-{os.getpid()}"))
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run("parity.server.app:app_from_environment", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level="warning", access_log=False, timeout_keep_alive=30,
                    limit_concurrency=1024)  # connections per worker; past it uvicorn answers 503
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parity", description="Define features once; train and serve the same values.")
    parser.add_argument("-C", "--project", default=".", help="project folder (default: the current one)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create a project from the bundled fraud example")
    p.add_argument("directory")
    p.add_argument("--users", type=int, default=2000, help="size of the generated data set")
    p.add_argument("--no-data", action="store_true", help="copy the definitions only")
    p.set_defaults(run=cmd_init)

    p = sub.add_parser("apply", help="validate definitions and record their versions in the registry")
    p.add_argument("--dry-run", action="store_true", help="show what would change, record nothing")
    p.set_defaults(run=cmd_apply)

    p = sub.add_parser("features", help="list features with dtype and version")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_features)

    p = sub.add_parser("explain", help="print the plan a request would run")
    p.add_argument("features", nargs="+")
    p.set_defaults(run=cmd_explain)

    p = sub.add_parser("training-set", help="build a point-in-time-correct training set")
    p.add_argument("--spine", required=True, help="Parquet file with entity keys, a timestamp and labels")
    p.add_argument("--features", required=True, action="append")
    p.add_argument("--out", required=True, help="Parquet file to write")
    p.add_argument("--timestamp-column", default="timestamp")
    p.add_argument("--key-column", action="append", default=[], metavar="KEY=COLUMN",
                   help="spine column holding an entity key, when the names differ")
    p.add_argument("--timezone", help="zone of a naive spine timestamp column")
    p.add_argument("--partitions", type=_positive_int, help="key partitions to run in, one in memory at a time "
                   "(default: [offline] partitions, else enough to keep the largest source in [offline] memory_budget)")
    p.add_argument("--with-status", action="store_true",
                   help="add a '<feature>:status' column per feature (present, missing, expired, error)")
    p.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="where the plan runs: this process (default) or Spark (pip install \"parity[spark]\"); on "
                   "Spark, --spine may be a Parquet folder and --out is a folder written by the executors")
    p.add_argument("--master", help="the Spark cluster, e.g. local[4], spark://host:7077, yarn (default: [spark] "
                   "master, else local[*])")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=cmd_training_set)

    p = sub.add_parser("materialize", help="load the latest values into the online store")
    p.add_argument("--full", action="store_true", help="re-read everything instead of what is new since the last run")
    p.add_argument("--until", help="cutoff time (ISO-8601 with zone; default now)")
    p.add_argument("--view", action="append", help="only this feature view (repeatable)")
    p.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="where feature views are chosen and written: this process (default) or Spark's executors, "
                   "into the Redis online store")
    p.add_argument("--master", help="the Spark cluster (default: [spark] master, else local[*])")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=cmd_materialize)

    p = sub.add_parser("query", help="online feature values for entities")
    p.add_argument("--features", required=True, action="append")
    p.add_argument("--entity", action="append", default=[], help="key=value[,key=value] (repeatable)")
    p.add_argument("--entities", help='JSON: {"user_id": 1} or a list of such objects')
    p.add_argument("--now", help="query time (ISO-8601 with zone; default now)")
    p.add_argument("--status", action="store_true", help="show status and event time per value")
    p.set_defaults(run=cmd_query)

    p = sub.add_parser("stream", help="consume stream sources (NATS JetStream, MQTT) into the event log and online store")
    p.add_argument("--source", action="append", help="only this stream source (repeatable)")
    p.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                   help="stop after this long without a message (default: run until stopped)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=cmd_stream)

    p = sub.add_parser("push", help="push JSON-lines events into a stream source (one commit)")
    p.add_argument("source")
    p.add_argument("--events", default="-", help="a JSON-lines file, or - for stdin")
    p.set_defaults(run=cmd_push)

    p = sub.add_parser("freshness", help="event-to-servable lag (p50/p99) and consumer lag per stream source")
    p.add_argument("--source", action="append")
    p.set_defaults(run=cmd_freshness)

    p = sub.add_parser("skew", help="replay logged online requests through the offline engine: mismatch rate and "
                                    "likely cause per feature")
    p.add_argument("--sample", type=int, default=10_000, help="logged rows to replay, drawn by --seed (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--since", help="served at or after this ISO-8601 time")
    p.add_argument("--until", help="served before this ISO-8601 time")
    p.add_argument("--examples", type=int, default=3, help="examples shown per feature")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.add_argument("--fail", action="store_true", help="exit 1 when any value differs (for a scheduled check)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=cmd_skew)

    p = sub.add_parser("monitor", help="served values against their baselines: drift and null bursts per bucket, "
                                       "kept as a time series; an HTML report on request")
    p.add_argument("--since", help="served at or after this ISO-8601 time")
    p.add_argument("--until", help="served before this ISO-8601 time")
    p.add_argument("--bucket", default="1h", help="bucket length (default 1h)")
    p.add_argument("--features", action="append", default=[], help="only these features (comma-separated)")
    p.add_argument("--html", help="write the self-contained HTML report here (needs parity[report])")
    p.add_argument("--reference-file", help="compare with a fixed reference: a Parquet file whose columns "
                   "are named by feature, e.g. a training set written by `parity training-set --out`")
    p.add_argument("--reference-since", help="compare with the values served from this time (a past window) "
                                             "instead of the training set's baseline")
    p.add_argument("--reference-until", help="... until this time")
    p.add_argument("--skew", action="store_true", help="also replay a sample of the log (parity skew)")
    p.add_argument("--skew-sample", type=int, default=10_000, help="logged rows the skew replay samples (0: all)")
    p.add_argument("--no-record", action="store_true", help="do not keep the results in the monitoring store")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fail", action="store_true", help="exit 1 on drift, a null burst or skew")
    p.set_defaults(run=cmd_monitor)

    p = sub.add_parser("token", help="API tokens for the server: create (shown once), list, revoke")
    actions = p.add_subparsers(dest="action", required=True)
    t = actions.add_parser("create", help="a new token for a principal holding roles of the definitions")
    t.add_argument("--principal", required=True, help="who the token stands for (named in the audit trail)")
    t.add_argument("--role", action="append", default=[], help="a role defined with pt.Role (repeatable)")
    t.add_argument("--expires-days", type=float, default=None, help="valid for this many days (default: until revoked)")
    t = actions.add_parser("list", help="every token: id, principal, roles, created, expiry or revocation, last use")
    t.add_argument("--json", action="store_true")
    t = actions.add_parser("revoke", help="revoke a token by id (refused by every server worker at once)")
    t.add_argument("id")
    p.set_defaults(run=cmd_token)

    p = sub.add_parser("audit", help="the audit trail: verify its chain and signatures, or search it")
    actions = p.add_subparsers(dest="action", required=True)
    t = actions.add_parser("verify", help="check every record's hash chain and every signed checkpoint (exit 1 if not)")
    t.add_argument("--public-key", help="verify with this Ed25519 public key (PEM) instead of the one beside the key")
    t = actions.add_parser("search", help="records as JSON lines, filtered")
    t.add_argument("--principal")
    t.add_argument("--action", dest="what", help="query, catalog, token.create, token.revoke, apply")
    t.add_argument("--feature")
    t.add_argument("--outcome", help="ok, forbidden, unauthenticated, or another error code")
    t.add_argument("--since", help="ISO-8601 time with zone")
    t.add_argument("--until", help="ISO-8601 time with zone")
    t.add_argument("--limit", type=int, default=1000)
    p.set_defaults(run=cmd_audit)

    p = sub.add_parser("serve", help="the HTTP API (needs parity[server])")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=2, help="processes (default 2: one per core here)")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("dead-letters", help="events a stream source rejected, with the reasons")
    p.add_argument("source")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(run=cmd_dead_letters)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ParityError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
