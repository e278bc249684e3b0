"""Pushing events: validation into dead letters, lateness, dedup, backfill visibility, one writer."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

import parity as pt
from parity.connectors.event_log import FAN_IN, read_dead_letters
from parity.errors import DefinitionError, StoreError

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
card = pt.Entity("card", keys={"card_id": pt.Int64})


def _project(tmp: str, *, created_time: str | None = None, lateness: dt.timedelta | None = None) -> pt.Project:
    schema = {"id": pt.String, "card_id": pt.Int64, "amount": pt.Float64, "ts": pt.Timestamp}
    if created_time:
        schema["known_at"] = pt.Timestamp
    source = pt.StreamSource(name="txns", schema=schema, event_time="ts", event_id="id", created_time=created_time,
                             max_lateness=lateness)
    view = pt.WindowView("v", entity=card, source=source, columns={"amount": pt.Float64}, windows=["1h"],
                         features=[pt.Aggregate("n", pt.agg.count()), pt.Aggregate("s", pt.agg.sum("amount"))])
    return pt.Project.from_definitions([card, view], root=tmp)


def _event(i: int, at: dt.datetime, **extra: object) -> dict[str, object]:
    return {"id": f"e{i}", "card_id": 1, "amount": 1.5, "ts": at.isoformat(), **extra}


def test_bad_events_are_dead_lettered_with_reasons_and_the_good_ones_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    project = _project(str(tmp_path))
    report = project.push("txns", [
        _event(1, T0),
        {"id": "e2", "card_id": "one", "amount": 1.0, "ts": T0.isoformat()},
        {"id": "e3", "card_id": 1, "amount": 1.0, "ts": "2026-06-01T12:00:00"},
        {"card_id": 1, "amount": 1.0, "ts": T0.isoformat()},
        {"id": "e5", "card_id": 2**70, "amount": 1.0, "ts": T0.isoformat()},
        {"id": "e6", "card_id": 1, "amount": True, "ts": T0.isoformat()},
        {"id": "e7", "card_id": 1, "amount": 1.0},
        "not an object",
    ])
    assert (report.accepted, report.dead) == (1, 7)
    reasons = [str(letter["reason"]) for letter in read_dead_letters(str(tmp_path), "txns")]
    assert reasons == [
        "field 'card_id': 'one' is not an int (a Int64 column)",
        "field 'ts': 2026-06-01T12:00:00 has no time zone; add one (e.g. 'Z') or declare the source's timezone "
        "(a Timestamp column)",
        "field 'id' (the event id) is missing",
        f"field 'card_id': {2**70} is not an int within the Int64 range (a Int64 column)",
        "field 'amount': True is not a float (a Float64 column)",
        "field 'ts' (the event time) is missing: an event without a time is never visible",
        "an event must be a JSON object",
    ]
    from parity.ports.stream import Incoming

    raw = project.ingestor("txns").ingest([Incoming(b"{oops", position=7)])
    assert raw.dead == 1 and raw.reasons[0].startswith("not JSON: ")
    project.close()


def test_late_events_are_applied_or_dead_lettered_never_dropped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    project = _project(str(tmp_path), lateness=dt.timedelta(minutes=10))
    project.push("txns", [_event(1, T0)])
    report = project.push("txns", [_event(2, T0 - dt.timedelta(minutes=5)), _event(3, T0 - dt.timedelta(minutes=11))])
    assert (report.accepted, report.late_applied, report.late_dead) == (1, 1, 1)
    letters = list(read_dead_letters(str(tmp_path), "txns"))
    assert "660 s behind the newest event time seen, past max_lateness (600 s)" in str(letters[0]["reason"])
    assert json.loads(str(letters[0]["payload"]))["id"] == "e3"
    project.close()


def test_a_backfill_does_not_change_what_an_earlier_training_set_saw(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Events from last month pushed today became servable today: a training set at their own
    # times does not see them (as known then) — unless the source declares trusted created times.
    spine = pl.DataFrame({"card_id": [1], "timestamp": [T0 + dt.timedelta(minutes=30)]})
    plain = _project(str(tmp_path / "plain"))
    plain.push("txns", [_event(i, T0 + dt.timedelta(minutes=i)) for i in range(3)])
    seen = pl.from_arrow(plain.training_set(spine, ["card.n[1h]"]))["card.n[1h]"].to_list()  # type: ignore[index]
    assert seen == [0]
    assert plain.query({"card_id": 1}, ["card.n[1h]"], now=T0 + dt.timedelta(minutes=30)).rows[0]["card.n[1h]"] == 0
    plain.close()
    trusted = _project(str(tmp_path / "trusted"), created_time="known_at")
    trusted.push("txns", [_event(i, T0 + dt.timedelta(minutes=i), known_at=(T0 + dt.timedelta(minutes=i, seconds=5))
                                 .isoformat()) for i in range(3)])
    seen = pl.from_arrow(trusted.training_set(spine, ["card.n[1h]"]))["card.n[1h]"].to_list()  # type: ignore[index]
    assert seen == [3]
    assert trusted.query({"card_id": 1}, ["card.n[1h]"], now=T0 + dt.timedelta(minutes=30)).rows[0]["card.n[1h]"] == 3
    trusted.close()


def test_one_writer_per_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = _project(str(tmp_path))
    first.push("txns", [_event(1, T0)])
    second = _project(str(tmp_path))
    with pytest.raises(StoreError, match="another process is writing its event log"):
        second.push("txns", [_event(2, T0)])
    first.close()
    assert second.push("txns", [_event(1, T0), _event(2, T0)]).duplicates == 1  # the lock is free; ids remembered
    second.close()


def test_stream_source_definition_errors() -> None:
    with pytest.raises(DefinitionError, match="event_id 'nope' is not a column of its schema"):
        pt.StreamSource(name="s", schema={"ts": pt.Timestamp}, event_time="ts", event_id="nope")
    with pytest.raises(DefinitionError, match="event_time 'ts' must be a Timestamp column"):
        pt.StreamSource(name="s", schema={"ts": pt.String, "id": pt.String}, event_time="ts", event_id="id")
    with pytest.raises(DefinitionError, match="MQTT qos must be 1 or 2"):
        pt.StreamSource(name="s", schema={"ts": pt.Timestamp, "id": pt.String}, event_time="ts", event_id="id",
                        mqtt=pt.MqttTopic("a/b", qos=0))


def test_events_that_would_fail_after_the_commit_are_dead_lettered_before_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from parity.ports.stream import Incoming

    project = _project(str(tmp_path))
    ingestor = project.ingestor("txns")
    report = ingestor.ingest([
        Incoming(json.dumps(_event(1, T0) | {"ts": "9999-12-31T23:59:59-14:00"})),  # year 10000 in UTC
        Incoming(json.dumps({"id": "\ud800", "card_id": 1, "amount": 1.0, "ts": T0.isoformat()})),
        Incoming("[" * 100_000 + "]" * 100_000),
        Incoming(json.dumps(_event(4, T0))),
    ])
    assert (report.accepted, report.dead) == (1, 3)
    assert "outside the instants parity stores" in report.reasons[0]
    assert "lone surrogate" in report.reasons[1] and report.reasons[1].startswith("not JSON")
    assert "nested too deeply" in report.reasons[2]
    assert project.push("txns", [_event(5, T0)]).accepted == 1  # the stream is not jammed
    project.close()


def test_a_future_event_does_not_make_later_events_late(tmp_path) -> None:  # type: ignore[no-untyped-def]
    project = _project(str(tmp_path), lateness=dt.timedelta(seconds=30))
    project.push("txns", [_event(1, T0), _event(2, dt.datetime(2099, 1, 1, tzinfo=dt.UTC))])
    report = project.push("txns", [_event(3, T0 + dt.timedelta(seconds=1))])
    assert (report.accepted, report.late_dead) == (1, 0)
    project.close()


def test_timestamp_event_ids_are_remembered_across_restarts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = pt.StreamSource(name="ticks", schema={"at": pt.Timestamp, "card_id": pt.Int64}, event_time="at",
                             event_id="at")
    view = pt.WindowView("t", entity=card, source=source, features=[pt.Aggregate("n", pt.agg.count())])
    event = {"at": T0.isoformat(), "card_id": 1}
    project = pt.Project.from_definitions([card, view], root=str(tmp_path))
    assert project.push("ticks", [event]).accepted == 1
    project.close()
    project = pt.Project.from_definitions([card, view], root=str(tmp_path))
    assert project.push("ticks", [event]).duplicates == 1
    project.close()


def test_a_commit_of_only_rejected_messages_keeps_its_position(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from parity.ports.stream import Incoming

    project = _project(str(tmp_path))
    ingestor = project.ingestor("txns")
    ingestor.ingest([Incoming(json.dumps(_event(1, T0)), position=1)])
    ingestor.ingest([Incoming(json.dumps(_event(1, T0)), position=2), Incoming(b"nope", position=3)])
    project.close()
    project = _project(str(tmp_path))
    assert project.ingestor("txns").positions["committed"] == 3  # a restart does not read 2 and 3 again
    project.close()


def test_materialize_of_a_stream_fed_view_keeps_every_logged_event(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = pt.StreamSource(name="txns", schema={"id": pt.String, "card_id": pt.Int64, "amount": pt.Float64,
                                                  "ts": pt.Timestamp}, event_time="ts", event_id="id")
    view = pt.WindowView("v", entity=card, source=source, columns={"amount": pt.Float64}, windows=["lifetime"],
                         features=[pt.Aggregate("n", pt.agg.count()), pt.Aggregate("top", pt.agg.max("amount"))])
    project = pt.Project.from_definitions([card, view], root=str(tmp_path))
    now = dt.datetime.now(dt.UTC)
    project.push("txns", [{"id": "a", "card_id": 1, "amount": 5.0, "ts": now.isoformat()}])
    project.push("txns", [{"id": "b", "card_id": 1, "amount": 7.0, "ts": now.isoformat()}])
    project.materialize(until=now - dt.timedelta(days=1))  # a cutoff before both commits
    project.push("txns", [{"id": "c", "card_id": 1, "amount": 1.0, "ts": now.isoformat()}])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    refs = ["card.n[lifetime]", "card.top[lifetime]"]
    online = project.query({"card_id": 1}, refs, now=later).rows[0]
    offline = pl.from_arrow(project.training_set(pl.DataFrame({"card_id": [1], "timestamp": [later]}), refs))
    assert online == {"card.n[lifetime]": 3, "card.top[lifetime]": 7.0}
    assert offline.select(refs).row(0, named=True) == online  # type: ignore[union-attr]
    project.close()


def test_json_payloads_are_read_by_the_same_rules_as_pushed_objects(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Transports hand over JSON bytes (parsed by orjson), push hands over objects: one schema check
    for both. JSON has no NaN, and an integer too large for a double is refused, not rounded."""
    from parity.ports.stream import Incoming

    project = _project(str(tmp_path))
    ingestor = project.ingestor("txns")
    report = ingestor.ingest([
        Incoming(json.dumps(_event(1, T0)).encode()),
        Incoming(json.dumps({"id": "j2", "card_id": "one", "amount": 1.0, "ts": T0.isoformat()}).encode()),
        Incoming(b'{"id": "j3", "card_id": 1, "amount": NaN, "ts": "' + T0.isoformat().encode() + b'"}'),
        Incoming(b'{"id": "j4", "card_id": 1, "amount": 1e400, "ts": "' + T0.isoformat().encode() + b'"}'),
        Incoming(json.dumps([_event(5, T0), _event(6, T0)])),
    ])
    assert (report.accepted, report.dead) == (3, 3)
    assert report.reasons[0] == "field 'card_id': 'one' is not an int (a Int64 column)"
    assert report.reasons[1].startswith("not JSON: ") and report.reasons[2].startswith("not JSON: ")
    project.close()


def test_the_nats_stream_sequence_is_read_from_both_reply_formats() -> None:
    from nats.aio.msg import Msg

    from parity.connectors.nats_stream import stream_sequence

    for reply in ("$JS.ACK.ORDERS.consumer1.1.4217.12.1733100000000000000.0",
                  "$JS.ACK.hub.ACCHASH.ORDERS.consumer1.1.4217.12.1733100000000000000.0.tok",
                  "$JS.ACK.hub.ACCHASH.ORDERS.consumer1.1.4217.12.1733100000000000000.0"):
        msg = Msg(None, subject="orders", reply=reply, data=b"")  # type: ignore[arg-type]
        assert stream_sequence(reply) == msg.metadata.sequence.stream == 4217
    with pytest.raises(StoreError, match="not a JetStream message"):
        stream_sequence("_INBOX.abc")


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_min_and_max_give_the_one_nan_whichever_nan_comes_first(tmp_path, store) -> None:  # type: ignore[no-untyped-def]
    """NaNs tie in the order of values; a set keeps the last of equal values, the offline kernel
    meets the first: with NaNs of different bits (numpy's inf - inf is -nan) both give the one NaN."""
    import struct
    import uuid

    from tests.support_services import REDIS_URL, require_service

    extra: dict[str, str] = {}
    if store == "redis":
        require_service("redis", "127.0.0.1", 6379)
        extra = {"online_store_type": "redis", "online_store_url": REDIS_URL,
                 "online_store_namespace": f"test-nan-{uuid.uuid4().hex}"}
    card = pt.Entity("card", keys={"card_id": pt.Int64})
    src = pt.StreamSource(name="xs", event_time="ts", event_id="id",
                          schema={"id": pt.Int64, "card_id": pt.Int64, "ts": pt.Timestamp, "x": pt.Float64})
    view = pt.WindowView("v", entity=card, source=src, windows=["lifetime"], columns={"x": pt.Float64},
                         features=[pt.Aggregate("xmax", pt.agg.max("x")), pt.Aggregate("xmin", pt.agg.min("x"))])
    project = pt.Project.from_definitions([card, view], root=str(tmp_path), **extra)  # type: ignore[arg-type]
    negative_nan = struct.unpack("<d", bytes.fromhex("000000000000f8ff"))[0]
    later = (T0 + dt.timedelta(seconds=1)).isoformat()
    project.push("xs", [{"id": 1, "card_id": 1, "ts": T0.isoformat(), "x": negative_nan},  # -nan first
                        {"id": 2, "card_id": 1, "ts": later, "x": float("nan")},
                        {"id": 3, "card_id": 2, "ts": T0.isoformat(), "x": float("nan")},  # -nan last
                        {"id": 4, "card_id": 2, "ts": later, "x": negative_nan}])
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    refs = ["card.xmax[lifetime]", "card.xmin[lifetime]"]
    offline = pl.from_arrow(project.training_set(pl.DataFrame({"card_id": [1, 2], "timestamp": [now, now]}), refs))
    assert isinstance(offline, pl.DataFrame)
    for row, key in enumerate((1, 2)):
        online = project.query({"card_id": key}, refs, now=now).rows[0]
        for ref in refs:
            assert struct.pack("<d", online[ref]).hex() == struct.pack("<d", offline[ref][row]).hex() \
                == "000000000000f87f", (key, ref)
    if store == "redis":
        project.online_store().drop()  # type: ignore[attr-defined]
    project.close()


def test_a_failed_apply_is_recovered_by_the_next_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The log commit landed, the store write failed (a lock, a timeout): the next commit first
    re-applies from the log, so the event is neither lost online nor left out of a window set."""
    from parity.errors import StoreError

    card = pt.Entity("card", keys={"card_id": pt.Int64})
    src = pt.StreamSource(name="xs", event_time="ts", event_id="id",
                          schema={"id": pt.Int64, "card_id": pt.Int64, "ts": pt.Timestamp, "x": pt.Float64})
    view = pt.WindowView("v", entity=card, source=src, windows=["lifetime"], columns={"x": pt.Float64},
                         features=[pt.Aggregate("n", pt.agg.count()), pt.Aggregate("xmax", pt.agg.max("x")),
                                   pt.Aggregate("xd", pt.agg.count_distinct("x"))])
    project = pt.Project.from_definitions([card, view], root=str(tmp_path))
    at = [(T0 + dt.timedelta(seconds=s)).isoformat() for s in range(3)]
    project.push("xs", [{"id": 0, "card_id": 1, "ts": at[0], "x": 7.0}])
    store = project.online_store()
    real = store.window_write

    def fail_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        store.window_write = real  # type: ignore[method-assign]
        raise StoreError("simulated: database is locked")

    store.window_write = fail_once  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="simulated"):
        project.push("xs", [{"id": 1, "card_id": 1, "ts": at[1], "x": 10.0}])
    project.push("xs", [{"id": 2, "card_id": 1, "ts": at[2], "x": 7.0}])
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    refs = ["card.n[lifetime]", "card.xmax[lifetime]", "card.xd[lifetime]"]
    assert project.query({"card_id": 1}, refs, now=now).rows[0] == \
        {"card.n[lifetime]": 3, "card.xmax[lifetime]": 10.0, "card.xd[lifetime]": 2}
    project.close()


def test_window_sets_are_read_in_the_snapshot_of_the_visibility_check(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A write landing between the visibility read and the set reads must not leak an event the
    query's time does not cover: both are read in one SQLite read transaction."""
    from parity.connectors.sqlite_online import SQLiteOnlineStore

    card = pt.Entity("card", keys={"card_id": pt.Int64})
    src = pt.StreamSource(name="xs", event_time="ts", event_id="id",
                          schema={"id": pt.Int64, "card_id": pt.Int64, "ts": pt.Timestamp, "x": pt.Float64})
    view = pt.WindowView("v", entity=card, source=src, windows=["1h"], columns={"x": pt.Float64},
                         features=[pt.Aggregate("xmax", pt.agg.max("x")), pt.Aggregate("xlast", pt.agg.last("x"))])
    writer = pt.Project.from_definitions([card, view], root=str(tmp_path))
    t = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
    writer.push("xs", [{"id": 1, "card_id": 1, "ts": (t - dt.timedelta(seconds=20)).isoformat(), "x": 1.0}])
    reader = pt.Project.from_definitions([card, view], root=str(tmp_path))
    original = SQLiteOnlineStore._set_answers
    pushed = []

    def write_in_between(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not pushed:
            pushed.append(writer.push("xs", [{"id": 2, "card_id": 1, "ts": (t + dt.timedelta(seconds=30)).isoformat(),
                                               "x": 99.0}]))
        return original(*args, **kwargs)

    monkeypatch.setattr(SQLiteOnlineStore, "_set_answers", write_in_between)
    row = reader.query({"card_id": 1}, ["card.xmax[1h]", "card.xlast[1h]"], now=t).rows[0]
    assert pushed and pushed[0].accepted == 1
    assert row == {"card.xmax[1h]": 1.0, "card.xlast[1h]": 1.0}
    reader.close()
    writer.close()


def test_naive_stream_times_follow_the_time_rules_of_every_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A declared zone reads naive times as everywhere (semantics.time): a skipped wall time is the
    gap's end, a repeated one its earliest instant, a date its midnight."""
    card = pt.Entity("card", keys={"card_id": pt.Int64})
    src = pt.StreamSource(name="berlin", event_time="ts", event_id="id", timezone="Europe/Berlin",
                          schema={"id": pt.Int64, "card_id": pt.Int64, "ts": pt.Timestamp})
    view = pt.WindowView("v", entity=card, source=src, windows=["lifetime"], features=[pt.Aggregate("n", pt.agg.count())])
    project = pt.Project.from_definitions([card, view], root=str(tmp_path))
    report = project.push("berlin", [{"id": 1, "card_id": 1, "ts": "2026-03-29T02:30:00"},  # skipped hour
                                     {"id": 2, "card_id": 1, "ts": "2026-10-25T02:30:00"},  # repeated hour
                                     {"id": 3, "card_id": 1, "ts": "2026-06-01"}])
    assert report.accepted == 3
    from parity.connectors.event_log import EventLog

    logged = EventLog(src, str(tmp_path)).read().sort("id")["ts"].to_list()
    assert logged == [dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC), dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC),
                      dt.datetime(2026, 5, 31, 22, 0, tzinfo=dt.UTC)]
    project.close()


def test_fields_from_the_transport_fill_what_an_event_does_not_say(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """MQTT topic levels come as ``Incoming.fields``: they fill an event's missing field, never
    override one it has, and are checked like every field."""
    from parity.connectors.mqtt_stream import _topic_fields
    from parity.ports.stream import Incoming

    project = _project(str(tmp_path))
    ingestor = project.ingestor("txns")
    fields = _topic_fields("cards/7/payments", {"card_id": 1})
    assert fields == {"card_id": "7"}
    report = ingestor.ingest([
        Incoming(json.dumps({"id": "f1", "amount": 1.0, "ts": T0.isoformat()}), fields={"card_id": 7}),
        Incoming(json.dumps({"id": "f2", "card_id": 8, "amount": 1.0, "ts": T0.isoformat()}), fields={"card_id": 7}),
        Incoming(json.dumps({"id": "f3", "amount": 1.0, "ts": T0.isoformat()}), fields=fields),  # "7" is text
    ])
    assert (report.accepted, report.dead) == (2, 1)
    assert report.reasons == ["field 'card_id': '7' is not an int (a Int64 column)"]
    from parity.connectors.event_log import EventLog

    logged = EventLog(project.stream_source("txns"), str(tmp_path)).read().sort("id")
    assert logged["card_id"].to_list() == [7, 8]
    project.close()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_window_read_of_now_reads_no_events_whatever_its_width(tmp_path, store) -> None:  # type: ignore[no-untyped-def]
    """Serving "now": every aggregate but the distinct ones' members is answered by one snapshot of
    seeks (prefix states, set edges, histogram checkpoints) — no event of the window is read, for a
    30-day window as for a 10-second one; a query of the past, where some events were not visible
    yet, reads them (so this test can tell the two apart)."""
    import uuid

    from tests.support_services import REDIS_URL, require_service

    a = pt.agg
    source = pt.StreamSource(name="txns", schema={"id": pt.String, "card_id": pt.Int64, "amount": pt.Float64,
                                                  "ts": pt.Timestamp}, event_time="ts", event_id="id")
    view = pt.WindowView("v", entity=card, source=source, columns={"amount": pt.Float64}, windows=["10s", "30d"],
                         features=[pt.Aggregate("n", a.count()), pt.Aggregate("s", a.sum("amount")),
                                   pt.Aggregate("sd", a.std("amount")), pt.Aggregate("lo", a.min("amount")),
                                   pt.Aggregate("hi", a.max("amount")), pt.Aggregate("first", a.first("amount")),
                                   pt.Aggregate("last", a.last("amount")),
                                   pt.Aggregate("p50", a.approx_percentile("amount", 0.5)),
                                   pt.Aggregate("p99", a.approx_percentile("amount", 0.99), where=pt.col("amount") > 10)])
    extra: dict[str, str] = {}
    if store == "redis":
        require_service("redis", "127.0.0.1", 6379)
        extra = {"online_store_type": "redis", "online_store_url": REDIS_URL,
                 "online_store_namespace": f"test-reads-{uuid.uuid4().hex}"}
    project = pt.Project.from_definitions([card, view], root=str(tmp_path), **extra)  # type: ignore[arg-type]
    try:
        start_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=700)  # pushed now: visible from now on
        events = [{"id": f"e{i}", "card_id": 1, "amount": float((i * 37) % 101),
                   "ts": (start_at + dt.timedelta(seconds=i)).isoformat()} for i in range(600)]
        for start in range(0, 600, 50):  # many histogram checkpoints (one every 16+ lane events)
            project.push("txns", events[start:start + 50])
        online = project.online_store()
        calls = {"window_read": 0, "window_seek": 0}
        for name in calls:
            method = getattr(online, name)

            def counted(*args, _method=method, _name=name, **kwargs):  # type: ignore[no-untyped-def]
                calls[_name] += 1
                return _method(*args, **kwargs)

            setattr(online, name, counted)
        refs = [f"card.{f.name}[{w}]" for f in view.features for w in ("10s", "30d")]
        now = dt.datetime.now(dt.UTC)
        got = project.query({"card_id": 1}, refs, now=now).rows[0]
        assert calls == {"window_read": 0, "window_seek": 1}, calls
        table = pl.from_arrow(project.training_set(pl.DataFrame({"card_id": [1], "timestamp": [now]}), refs))
        assert isinstance(table, pl.DataFrame)
        assert {r: got[r] for r in refs} == {r: table[r][0] for r in refs}
        assert got["card.n[30d]"] == 600 and got["card.p50[30d]"] is not None and got["card.p99[30d]"] is not None
        project.query({"card_id": 1}, refs, now=start_at + dt.timedelta(seconds=650))  # before any was visible
        assert calls["window_read"] == 1
    finally:
        if store == "redis":
            project.online_store().drop()  # type: ignore[attr-defined]
        project.close()


def test_an_atomic_message_is_refused_whole_and_leaves_its_commit_untouched(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from parity.ports.stream import Incoming

    project = _project(str(tmp_path), lateness=dt.timedelta(minutes=10))
    ingestor = project.ingestor("txns")
    later = T0 + dt.timedelta(hours=1)
    report = ingestor.ingest([
        Incoming([_event(1, T0)], atomic=True),
        # refused: its second event is not an event; its first (the newest time yet) must not move the watermark
        Incoming([_event(2, later), {"id": "e3", "card_id": "x", "amount": 1.0, "ts": T0.isoformat()}], atomic=True),
        Incoming([_event(4, T0 - dt.timedelta(minutes=5)), _event(1, T0)], atomic=True),  # late but allowed; a duplicate
        Incoming([_event(5, T0), "not an object"]),  # not atomic: the bad event is dead-lettered, the good one kept
    ], itemize=True)
    items = report.messages
    assert items is not None and [(m.accepted, m.duplicates, m.dead, m.refused) for m in items] == [
        (1, 0, 0, False), (0, 0, 0, True), (1, 1, 0, False), (1, 0, 1, False)]
    assert items[1].errors == [(1, "field 'card_id': 'x' is not an int (a Int64 column)")]
    assert items[2].late_applied == 1 and report.late_applied == 1
    assert [(m.first_seq, m.last_seq) for m in items] == [(1, 1), (None, None), (2, 2), (3, 3)]
    assert (report.accepted, report.dead, report.duplicates) == (3, 1, 1)
    assert ingestor.watermark_us == int(T0.timestamp() * 1e6)  # the refused message's later event took no part
    assert [str(d["payload"]) for d in read_dead_letters(str(tmp_path), "txns")] == ["not an object"]
    retried = ingestor.ingest([Incoming([_event(2, later)], atomic=True)], itemize=True)
    assert retried.messages is not None and retried.messages[0].accepted == 1  # its id was never taken as seen
    project.close()


def test_events_of_a_commit_that_failed_are_no_duplicates_when_retried(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    project = _project(str(tmp_path))
    ingestor = project.ingestor("txns")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(ingestor.log, "append", full_disk)
        with pytest.raises(OSError):
            project.push("txns", [_event(1, T0), _event(2, T0)])
    report = project.push("txns", [_event(1, T0), _event(2, T0)])
    assert (report.accepted, report.duplicates) == (2, 0)
    project.close()


def test_many_small_commits_keep_few_segments_and_every_event_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    project = _project(str(tmp_path))
    for i in range(300):  # one event per commit: pushes at a low rate
        project.push("txns", [_event(i, T0 + dt.timedelta(seconds=i))])
    log = project.ingestor("txns").log
    segments = log.segments()  # type: ignore[attr-defined]
    assert len(segments) == 4 + 5 + 4  # tiered: 300 = 4·64 + 5·8 + 4 (FAN_IN 8), not 300 — nor one rewritten each time
    assert [s[1] - s[0] + 1 for s in segments] == sorted((s[1] - s[0] + 1 for s in segments), reverse=True)
    frame = log.read()
    assert frame["_parity_log_seq"].to_list() == list(range(1, 301))
    assert frame["id"].to_list() == [f"e{i}" for i in range(300)]
    project.close()


def test_commits_of_mixed_sizes_keep_the_tiers_ordered_and_bounded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import random

    from parity.connectors.event_log import FAN_IN, _tier

    project = _project(str(tmp_path))
    rng = random.Random(3)
    n = 0
    for _ in range(400):  # pushes of 1 to 150 events, as concurrent pushes commit together
        size = rng.choice([1, 1, 2, 5, 20, 150])
        project.push("txns", [_event(n + i, T0) for i in range(size)])
        n += size
    log = project.ingestor("txns").log
    tiers = [_tier(last - first + 1) for first, last, _ in log.segments()]  # type: ignore[attr-defined]
    assert tiers == sorted(tiers, reverse=True)  # an older segment is never of a lower tier
    assert all(tiers.count(t) < FAN_IN for t in set(tiers)) and len(tiers) <= 5 * (FAN_IN - 1)
    assert log.read()["_parity_log_seq"].to_list() == list(range(1, n + 1))
    project.close()


def test_a_commit_whose_write_landed_before_it_failed_counts_its_retry_as_duplicates(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    project = _project(str(tmp_path))
    ingestor = project.ingestor("txns")
    project.push("txns", [_event(1, T0)])
    log = ingestor.log
    written = log._write  # type: ignore[attr-defined]

    def landed_then_failed(*args: object, **kwargs: object) -> None:
        written(*args, **kwargs)  # the segment is renamed into place...
        raise OSError(5, "Input/output error")  # ...and then the folder's fsync fails

    with monkeypatch.context() as patched:
        patched.setattr(log, "_write", landed_then_failed)
        with pytest.raises(OSError):
            project.push("txns", [_event(2, T0), _event(3, T0)])
    retried = project.push("txns", [_event(2, T0), _event(3, T0), _event(4, T0)])
    assert (retried.accepted, retried.duplicates, retried.first_seq) == (1, 2, 4)  # in the log once, seq 4 next
    assert log.read()["id"].to_list() == ["e1", "e2", "e3", "e4"]
    assert project.query({"card_id": [1]}, ["card.n[1h]"]).rows[0]["card.n[1h]"] == 0  # T0 is long past: read works
    project.close()


def test_a_compaction_that_fails_does_not_fail_the_commit_it_follows(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    project = _project(str(tmp_path))
    log = project.ingestor("txns").log

    def no_space() -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(log, "compact", no_space)
        for i in range(10):
            assert project.push("txns", [_event(i, T0)]).accepted == 1
    assert len(log.segments()) == 10  # type: ignore[attr-defined]
    assert project.push("txns", [_event(10, T0)]).first_seq == 11  # contiguous; merged again now
    assert len(log.segments()) < 10 and log.read()["_parity_log_seq"].to_list() == list(range(1, 12))  # type: ignore[attr-defined]
    project.close()


def test_merged_parts_stay_for_readers_then_go_and_a_killed_writers_leftovers_are_swept(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    from parity.connectors import event_log
    from parity.connectors.event_log import live_segments

    project = _project(str(tmp_path))
    log = project.ingestor("txns").log
    folder = log.dir  # type: ignore[attr-defined]
    listed_before_merge = [p for _, _, p in live_segments(folder)]
    for i in range(FAN_IN):
        project.push("txns", [_event(i, T0)])
        listed_before_merge = listed_before_merge or [p for _, _, p in live_segments(folder)]
    assert len(live_segments(folder)) == 1  # merged...
    assert all(os.path.exists(p) for p in listed_before_merge)  # ...and a reader that listed before still reads
    assert len([n for n in os.listdir(folder) if n.startswith("seg-")]) == FAN_IN + 1
    assert log.read()["_parity_log_seq"].to_list() == list(range(1, FAN_IN + 1))  # type: ignore[attr-defined]
    open(os.path.join(folder, ".seg-x.parquet.tmp"), "wb").close()  # a write killed before its rename
    project.close()
    monkeypatch.setattr(event_log, "RETIRE_AFTER_SECONDS", 0.0)  # as if the grace period had passed
    reopened = _project(str(tmp_path))
    reopened.ingestor("txns")  # the next writer removes what the killed one left and the retired parts
    assert sorted(os.listdir(folder)) == [".writer.lock", f"seg-{1:020d}-{FAN_IN:020d}.parquet"]
    assert reopened.push("txns", [_event(99, T0)]).first_seq == FAN_IN + 1
    reopened.close()


def _times() -> object:
    """Stream times as producers send them: ISO text with Z, offsets, none, a date alone, spaces,
    seconds fractions, out of every range; aware and naive datetimes; junk."""
    from hypothesis import strategies as st

    instants = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59))
    offsets = st.sampled_from(["Z", "+00:00", "+02:00", "-05:30", "+14:00", "-23:59", ""])
    text = st.builds(lambda d, o, sep, pad: pad + d.isoformat(sep=sep) + o + pad, instants, offsets,
                     st.sampled_from(["T", " "]), st.sampled_from(["", " "]))
    dates = st.builds(lambda d: d.date().isoformat(), instants)
    aware = st.builds(lambda d, h: d.replace(tzinfo=dt.timezone(dt.timedelta(hours=h))), instants,
                      st.integers(-12, 12))
    return st.one_of(text, dates, aware, instants, st.sampled_from(["T", "2024-13-01T00:00Z", "nowT", 17, None]))


def test_the_common_time_form_is_read_as_the_whole_rules_read_it() -> None:
    """``ingest.events`` reads zoned ISO text by a shortcut: for every time a producer may send,
    with and without a declared zone and an online store's narrower range, the shortcut gives
    the value — or the refusal, word for word — that the whole rules (``_timestamp``) give."""
    from zoneinfo import ZoneInfo

    from hypothesis import example, given, settings

    from parity.ingest import events

    ranges = [None, (0, events.time.to_micros(dt.datetime(2100, 1, 1, tzinfo=dt.UTC)), "the store holds")]
    zones = [None, ZoneInfo("Europe/Berlin")]
    converters = [(events._time_converter(z, r), z, r) for z in zones for r in ranges]

    def whole(value: object, zone: object, time_range: object) -> object:
        try:
            micros = events._timestamp(value, zone)
            return micros if time_range is None else events._within(micros, value, time_range)  # type: ignore[arg-type]
        except events.BadEvent as exc:
            return ("refused", str(exc))

    @settings(max_examples=400, deadline=None)
    @given(value=_times())
    @example(value="0001-01-01T23:59:59Z")  # the edges of what parity stores (0001-01-02 to 9999-12-31T00:00Z)
    @example(value="0001-01-02T00:00:00Z")
    @example(value="9999-12-31T00:00:00Z")
    @example(value="9999-12-31T00:00:00.000001Z")
    @example(value="9999-12-30T23:00:00-01:00")
    @example(value="2024-01-01T10:00:00Z\x00Z")  # Python's parser stops at a NUL: refused whole
    @example(value="2024-01-01T10:00:00Z\x00garbage")
    def check(value: object) -> None:
        for convert, zone, time_range in converters:
            try:
                got: object = convert(value)
            except events.BadEvent as exc:
                got = ("refused", str(exc))
            assert got == whole(value, zone, time_range), (value, zone, time_range)

    check()
    # refused by the whole rules too (``semantics.time.parse_iso``), not read as 10:00
    assert whole("2024-01-01T10:00:00Z\x00garbage", None, None) == \
        ("refused", "'2024-01-01T10:00:00Z\\x00garbage' is not ISO-8601 text")


def test_event_to_servable_lag_ends_when_the_store_holds_the_commit(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Freshness is measured when the online store has applied a commit, not when the commit was
    stamped: an apply that takes 40 ms (of the ingestor's clock) shows in the lag, and a log
    merge after it does not."""
    from parity.ports.stream import Incoming
    from parity.semantics.time import to_micros

    t0 = to_micros(T0)
    now = [t0 + 1_000_000]  # the event arrives a second after its event time
    project = _project(str(tmp_path))
    ingestor = project.ingestor("txns", clock=lambda: now[0])
    store = ingestor.store
    writes = store.window_write

    def slow_write(*args: object, **kwargs: object) -> None:
        now[0] += 40_000
        writes(*args, **kwargs)

    def slow_merge() -> None:
        now[0] += 500_000

    monkeypatch.setattr(store, "window_write", slow_write)
    monkeypatch.setattr(ingestor.log, "compact", slow_merge)
    assert ingestor.ingest([Incoming([_event(1, T0)], 1, t0 + 1_000_000)]).accepted == 1
    lag = ingestor.freshness()
    assert lag["event_to_servable"]["p50_ms"] == 1_040.0  # type: ignore[index]
    assert lag["receive_to_servable"]["p50_ms"] == 40.0  # type: ignore[index]
    project.close()


def test_the_log_is_merged_while_the_online_store_is_failing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Pushes keep committing to the log while every apply fails (the store is down): their
    segments are merged all the same, so the log does not grow a file per commit — and when the
    store is back, every event is served."""
    from parity.errors import StoreError

    project = _project(str(tmp_path))
    log = project.ingestor("txns").log
    store = project.online_store()
    real = store.window_write

    def down(*args: object, **kwargs: object) -> None:
        raise StoreError("simulated: the store is down")

    store.window_write = down  # type: ignore[method-assign]
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    for i in range(40):
        with pytest.raises(StoreError, match="simulated"):
            project.push("txns", [_event(i, recent)])
    assert len(log.segments()) < 10  # type: ignore[attr-defined]
    store.window_write = real  # type: ignore[method-assign]
    assert project.push("txns", [_event(40, recent)]).first_seq == 41
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    assert project.query({"card_id": [1]}, ["card.n[1h]"], now=later).rows[0]["card.n[1h]"] == 41
    assert len(log.segments()) < 10  # type: ignore[attr-defined]
    project.close()
