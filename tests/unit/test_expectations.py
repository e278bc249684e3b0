"""Expectations and freshness: a bad batch is quarantined before it reaches the online store (or
warned about), a stale source is found, and served traffic that breaks an expectation is found in
its hour — while good data raises nothing."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from tests.support import at

import parity as pt
from parity.cli.main import main
from parity.connectors.feature_log_parquet import ParquetFeatureLog
from parity.errors import DefinitionError
from parity.monitor.feature_log import FeatureLogger
from parity.registry.versions import Versions
from parity.runtime.monitoring import HOUR_US, watch_log


def definitions(on_violation: str = "quarantine", freshness: dt.timedelta | None = None) -> list[object]:
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView(
        "profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
        features=[pt.Feature("amount", pt.Float64, expect=[pt.expect.between(0, 1_000), pt.expect.not_null(0.9)]),
                  pt.Feature("country", pt.String, expect=[pt.expect.one_of(["DE", "FR"])])],
        unique_key_time=True, on_violation=on_violation, freshness=freshness)
    return [user, view]


def _project(root, defs) -> pt.Project:  # type: ignore[no-untyped-def]
    return pt.Project.from_definitions(defs, root=str(root), online_store_path=str(root / "o.db"))


GOOD = pl.DataFrame({"user_id": list(range(10)), "ts": [at(1)] * 10, "amount": [float(i) for i in range(10)],
                     "country": ["DE", "FR"] * 5})


def _amounts(project: pt.Project, now: dt.datetime) -> list[object]:
    return [r["user.amount"] for r in project.query({"user_id": list(range(10))}, ["user.amount"], now=now).rows]


@pytest.mark.parametrize("partitions", [1, 3])
def test_a_bad_batch_is_quarantined_and_never_served_then_goes_in_once_fixed(tmp_path, partitions):
    # in key partitions, the batch is still judged whole: counts summed over partitions, one verdict
    GOOD.write_parquet(tmp_path / "u.parquet")
    with _project(tmp_path, definitions()) as project:
        (good,) = project.materialize(until=at(2), incremental=False, partitions=partitions)
        assert not good.violations and not good.quarantined and good.written == 10
        newer = GOOD.with_columns(ts=pl.lit(at(3)), amount=pl.col("amount") + 100)
        bad = newer.with_columns(amount=pl.when(pl.col("user_id") == 3).then(5_000.0).otherwise(pl.col("amount")),
                                 country=pl.when(pl.col("user_id") == 4).then(pl.lit("XX")).otherwise(pl.col("country")))
        pl.concat([GOOD, bad, bad.filter(pl.col("user_id") == 7)]).write_parquet(tmp_path / "u.parquet")
        (report,) = project.materialize(until=at(4), incremental=False, partitions=partitions)
        assert report.quarantined and report.written == 0
        broken = sorted(v.describe() for v in report.violations)
        assert broken == [
            "feature user.amount: expected between 0.0 and 1000.0; 1 of 10 broke it (e.g. 5000.0)",
            "feature user.country: expected one of 'DE', 'FR'; 1 of 10 broke it (e.g. 'XX')",
            ("view profile: expected one row per key and event time; 2 of 21 broke it "
            "(e.g. user_id=7 at 2024-01-03T00:00:00+00:00)"),
        ]
        assert _amounts(project, at(4)) == [float(i) for i in range(10)]  # nothing of the bad batch served
        pl.concat([GOOD, newer]).write_parquet(tmp_path / "u.parquet")  # fixed at the source
        (fixed,) = project.materialize(until=at(4), incremental=False, partitions=partitions)
        assert not fixed.quarantined and fixed.written == 10
        assert _amounts(project, at(4)) == [i + 100.0 for i in range(10)]


def test_warn_mode_writes_and_says_what_broke_and_the_cli_exits_1_on_quarantine(tmp_path, capsys):
    nulls = GOOD.with_columns(amount=pl.when(pl.col("user_id") < 2).then(None).otherwise(pl.col("amount")))
    nulls.write_parquet(tmp_path / "u.parquet")  # 20% null: below the 90% that must be present
    with _project(tmp_path, definitions("warn")) as project:
        (report,) = project.materialize(until=at(2), incremental=False)
    assert not report.quarantined and report.written == 10
    assert [v.describe() for v in report.violations] == [
        "feature user.amount: expected not null in at least 0.9 of values; 2 of 10 broke it (e.g. 20.00% null)"]
    (tmp_path / "parity.toml").write_text('[project]\ndefinitions = "defs.py"\n[online_store]\npath = "o2.db"\n')
    (tmp_path / "defs.py").write_text("from tests.unit.test_expectations import definitions\n\n"
                                      "user, profile = definitions()\n")
    assert main(["-C", str(tmp_path), "materialize", "--full", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "QUARANTINED" in captured.out and "expected not null in at least 0.9" in captured.out
    assert "quarantined profile" in captured.err


def test_a_stale_source_is_found_at_materialize_and_by_the_monitor_but_still_written(tmp_path):
    GOOD.write_parquet(tmp_path / "u.parquet")
    defs = definitions(freshness=dt.timedelta(hours=6))
    with _project(tmp_path, defs) as project:
        (fresh,) = project.materialize(until=at(1, 5), incremental=False)
        assert fresh.violations == ()
        (stale,) = project.materialize(until=at(2), incremental=False)  # newest event a day old
        assert not stale.quarantined and stale.written == 10  # stale data is still the best there is
        assert [v.expectation for v in stale.violations] == ["an event within 6:00:00"]
        now = int(at(1, 3).timestamp() * 1e6)
        quiet = watch_log(project, ParquetFeatureLog(str(tmp_path)).read(), now_us=now)
        late = watch_log(project, ParquetFeatureLog(str(tmp_path)).read(), now_us=now + 24 * HOUR_US)
    assert [(view, bool(broken)) for view, _, _, _, broken in quiet.freshness] == [("profile", False)]
    assert [(view, bool(broken)) for view, _, _, _, broken in late.freshness] == [("profile", True)]
    assert "freshness of profile: view profile: expected an event within 6:00:00" in "\n".join(late.lines())


def test_served_values_that_break_an_expectation_are_found_in_their_hour(tmp_path):
    GOOD.write_parquet(tmp_path / "u.parquet")
    start = int(dt.datetime(2024, 2, 1, tzinfo=dt.UTC).timestamp() * 1e6)
    with _project(tmp_path, definitions()) as project:
        versions = {r: Versions(project.catalog).version(project.catalog.feature_at(project.catalog.parse(r)))
                    for r in ("user.amount", "user.country")}
        clock = [start]
        logger = FeatureLogger(ParquetFeatureLog(str(tmp_path)), sample_rate=1.0, clock=lambda: clock[0])
        rng = np.random.default_rng(0)
        for hour in range(6):
            for i in range(200):
                clock[0] = start + hour * HOUR_US + i * 1_000_000
                amount = 2_000.0 if hour == 4 and i % 10 == 0 else float(rng.uniform(0, 1_000))
                logger.record([{"user_id": i}], ["user.amount", "user.country"], versions,
                              [{"user.amount": amount, "user.country": "DE"}],
                              [{"user.amount": "present", "user.country": "present"}], clock[0], None)
        logger.close()
        run = watch_log(project, ParquetFeatureLog(str(tmp_path)).read())
        points = project.monitor_store().points(metric="expectation", feature="user.amount")
    amount = next(w for w in run.watches if w.feature == "user.amount")
    country = next(w for w in run.watches if w.feature == "user.country")
    assert [len(b) for b in amount.breaches] == [0, 0, 0, 0, 1, 0] and amount.status == "breach"
    assert amount.breaches[4][0].bad == 20 and not any(country.breaches) and country.status == "no_baseline"
    assert [p.status for p in points] == ["ok"] * 4 + ["breach", "ok"]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: pt.Feature("c", pt.String, expect=[pt.expect.between(0, 1)]), "expect.between needs a number feature"),
    (lambda: pt.expect.not_null(0), "above 0 and at most 1"),
    (lambda: pt.expect.between(5, 1), "the low bound is above the high one"),
    (lambda: pt.expect.one_of("DE"), "give a list of the allowed values"),
    (lambda: definitions(on_violation="drop"), "on_violation='drop'; expected 'warn' or 'quarantine'"),
    (lambda: pt.Feature("a", pt.Float64, expect=["positive"]), "expect takes pt.expect"),
])
def test_bad_expectations_are_definition_errors_naming_them(make, message):
    with pytest.raises(DefinitionError, match=message):
        make()


def test_stream_events_that_break_an_expectation_are_dead_lettered_and_never_counted(tmp_path):
    from parity.connectors.event_log import read_dead_letters

    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    card = pt.Entity("card", keys={"card_id": pt.Int64})
    source = pt.StreamSource(name="txns", schema={"id": pt.String, "card_id": pt.Int64, "amount": pt.Float64,
                                                  "channel": pt.String, "ts": pt.Timestamp},
                             event_time="ts", event_id="id",
                             expect={"amount": [pt.expect.between(0, 10_000)], "channel": [pt.expect.not_null(),
                                                                                          pt.expect.one_of(["web", "pos"])]})
    view = pt.WindowView("v", entity=card, source=source, columns={"amount": pt.Float64}, windows=["1h"],
                         features=[pt.Aggregate("n", pt.agg.count()), pt.Aggregate("s", pt.agg.sum("amount"))])
    with pt.Project.from_definitions([card, view], root=str(tmp_path), online_store_path=str(tmp_path / "o.db")) \
            as project:
        events = [{"id": f"e{i}", "card_id": 1, "amount": amount, "channel": channel, "ts": t0.isoformat()}
                  for i, (amount, channel) in enumerate([(10.0, "web"), (-1.0, "web"), (float("nan"), "pos"),
                                                         (5.0, None), (5.0, "atm"), (20.0, "pos")])]
        report = project.push("txns", events)
        assert (report.accepted, report.dead) == (2, 4)
        served = project.query({"card_id": 1}, ["card.n[1h]", "card.s[1h]"]).rows[0]
        assert served == {"card.n[1h]": 2, "card.s[1h]": 30.0}  # the bad events never reached the index
    reasons = [str(letter["reason"]) for letter in read_dead_letters(str(tmp_path), "txns")]
    assert reasons == ["field 'amount': -1.0 breaks the expectation between 0.0 and 10000.0",
                       "field 'amount': nan breaks the expectation between 0.0 and 10000.0",
                       "field 'channel': None breaks the expectation not null",
                       "field 'channel': 'atm' breaks the expectation one of 'web', 'pos'"]


def test_warn_mode_applies_stream_events_that_break_an_expectation_and_counts_each_once(tmp_path):
    from parity.connectors.event_log import read_dead_letters
    from parity.ports.stream import Incoming

    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    card = pt.Entity("card", keys={"card_id": pt.Int64})
    source = pt.StreamSource(name="txns", schema={"id": pt.String, "card_id": pt.Int64, "amount": pt.Float64,
                                                  "channel": pt.String, "ts": pt.Timestamp},
                             event_time="ts", event_id="id", on_violation="warn",
                             expect={"amount": [pt.expect.between(0, 10_000)], "channel": [pt.expect.not_null(),
                                                                                          pt.expect.one_of(["web", "pos"])]})
    view = pt.WindowView("v", entity=card, source=source, columns={"amount": pt.Float64}, windows=["1h"],
                         features=[pt.Aggregate("n", pt.agg.count()), pt.Aggregate("s", pt.agg.sum("amount"))])

    def event(i: int, amount: float, channel: str | None) -> dict[str, object]:
        return {"id": f"e{i}", "card_id": 1, "amount": amount, "channel": channel, "ts": t0.isoformat()}

    with pt.Project.from_definitions([card, view], root=str(tmp_path), online_store_path=str(tmp_path / "o.db")) \
            as project:
        events = [event(i, amount, channel) for i, (amount, channel) in
                  enumerate([(10.0, "web"), (-1.0, "web"), (5.0, None), (5.0, "atm"), (20.0, "pos")])]
        report = project.push("txns", events)
        assert (report.accepted, report.dead, report.warned) == (5, 0, 3)
        assert report.warnings[0] == "event 'e1': amount: between 0.0 and 10000.0"
        # a duplicate of a broken event is not counted again; an atomic message refused whole
        # (its second event is malformed) counts nothing of its first, broken one
        ingestor = project.ingestor("txns")
        again = ingestor.ingest([Incoming([event(1, -1.0, "web")]),
                                 Incoming([event(9, -5.0, "web"), {"id": "e10", "card_id": 1}], atomic=True),
                                 Incoming([event(11, 7.0, "atm")])], itemize=True)
        assert (again.accepted, again.duplicates, again.warned) == (1, 1, 1)
        assert [m.warned for m in again.messages or []] == [0, 0, 1]
        assert ingestor.freshness()["expectations_broken"] == {
            "amount: between 0.0 and 10000.0": 1, "channel: not null": 1, "channel: one of 'web', 'pos'": 2}
        served = project.query({"card_id": 1}, ["card.n[1h]", "card.s[1h]"]).rows[0]
        assert served == {"card.n[1h]": 6, "card.s[1h]": 46.0}  # warned about, and applied
    assert [str(letter["reason"]) for letter in read_dead_letters(str(tmp_path), "txns")] == []
    with pytest.raises(DefinitionError, match="on_violation='drop'; expected 'quarantine'"):
        pt.StreamSource(name="s", schema={"id": pt.String, "ts": pt.Timestamp}, event_time="ts", event_id="id",
                        on_violation="drop")


def test_the_event_rule_and_the_column_rule_agree():
    from parity.semantics.expectations import breaks, check_values

    cases = [(pt.expect.between(0, 10), [0.0, 10.0, -0.0, 10.5, float("nan"), float("inf"), None, 3.0]),
             (pt.expect.between(high=5), [-1e300, 5.0, 5.000001, None]),
             (pt.expect.one_of(["a", "b"]), ["a", "c", None, "b", ""]),
             (pt.expect.not_null(), [1.0, None])]
    for e, values in cases:
        series = pl.Series(values, dtype=pl.String if isinstance(values[0], str) else pl.Float64)
        column = check_values(series, (e,), "f")
        bad = sum(breaks(e, v) for v in values)
        assert (column[0].bad if column else 0) == bad, (e, values)


def test_stream_expectations_are_checked_when_defined():
    with pytest.raises(DefinitionError, match="expect names 'nope', which is not a column"):
        pt.StreamSource(name="s", schema={"id": pt.String, "ts": pt.Timestamp}, event_time="ts", event_id="id",
                        expect={"nope": [pt.expect.not_null()]})
    with pytest.raises(DefinitionError, match="expect.not_null takes no rate here"):
        pt.StreamSource(name="s", schema={"id": pt.String, "ts": pt.Timestamp}, event_time="ts", event_id="id",
                        expect={"id": [pt.expect.not_null(0.5)]})


def test_on_violation_is_policy_and_leaves_versions_as_they_were():
    from parity.registry.versions import window_version

    card = pt.Entity("card", keys={"card_id": pt.Int64})

    def version(**kwargs: object) -> str:
        source = pt.StreamSource(name="txns", schema={"id": pt.String, "card_id": pt.Int64, "amount": pt.Float64,
                                                      "ts": pt.Timestamp}, event_time="ts", event_id="id", **kwargs)
        return window_version(pt.WindowView("v", entity=card, source=source, columns={"amount": pt.Float64},
                                            windows=["1h"], features=[pt.Aggregate("n", pt.agg.count())]))

    # the version a stream view had before on_violation existed: an upgrade must not rebuild its index
    assert version() == version(on_violation="warn") == "314a372b86cb9d0e"
    expect = {"amount": [pt.expect.between(0, 10)]}
    assert version(expect=expect) == version(expect=expect, on_violation="warn") == "d33cee7341498d49"
