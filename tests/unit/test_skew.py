"""Train/serve skew, measured: logged requests replayed offline find nothing on a healthy deployment
and find each planted skew with its cause."""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
from tests.support import at

import parity as pt
from parity.cli.main import main

USERS = list(range(1, 41))
FEATURES = ["user.score", "user.tier", "user.seen", "user.limit", "user.double"]
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)  # created after anything is served


def _profile_rows() -> pl.DataFrame:
    rows = []
    for u in USERS:  # two rows per user, distinct payloads, awkward floats among them
        for day, score in ((1, u + 0.25), (2, [math.nan, -0.0, 1.5][u % 3] if u % 4 == 0 else u * 10 + 0.5)):
            rows.append({"user_id": u, "ts": at(day), "score": score, "tier": f"t{u}-{day}",
                         "seen": at(day, u % 24), "email": f"u{u}@x.org"})
    return pl.DataFrame(rows)


def _limit_rows() -> pl.DataFrame:
    return pl.DataFrame({"user_id": USERS, "ts": [at(1)] * len(USERS), "created": [at(1)] * len(USERS),
                         "limit": [None if u == 11 else u * 100 for u in USERS]})


def _definitions(factor: float = 2.0) -> list[object]:
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    profile = pt.FeatureView("profile", entity=user,
                             source=pt.ParquetSource("profile", path="profile.parquet", event_time="ts"),
                             features=[pt.Feature("score", pt.Float64), pt.Feature("tier", pt.String),
                                       pt.Feature("seen", pt.Timestamp), pt.Feature("email", pt.String, tags=["pii"])])
    limits = pt.FeatureView("limits", entity=user,
                            source=pt.ParquetSource("limits", path="limits.parquet", event_time="ts",
                                                    created_time="created", as_of="event_time"),
                            features=[pt.Feature("limit", pt.Int64)])

    @pt.resolver(entity=user, outputs=pt.Feature("double", pt.Float64))
    def double(score: float) -> float:
        return score * factor

    masker = pt.Role("masker", grants=[pt.Grant(entity="user")], pii="mask")
    return [user, profile, limits, double, masker]


def _project(root, factor: float = 2.0, rate: float = 0.0) -> pt.Project:  # type: ignore[no-untyped-def]
    return pt.Project.from_definitions(_definitions(factor), root=str(root), online_store_path=str(root / "o.db"),
                                       feature_log_sample_rate=rate)


def _serve(root, now: dt.datetime, prefix: str) -> None:  # type: ignore[no-untyped-def]
    with _project(root, rate=1.0) as project:
        for u in USERS:
            project.query({"user_id": u}, FEATURES, now=now, request_id=f"{prefix}-{u}")
        project.query({"user_id": USERS[:5]}, ["user.score", "user.email"], now=now, request_id=f"{prefix}-masked",
                      principal=pt.Principal("svc", ["masker"]))


def _deployment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _profile_rows().write_parquet(tmp_path / "profile.parquet")
    _limit_rows().write_parquet(tmp_path / "limits.parquet")
    with _project(tmp_path) as project:
        project.materialize(until=at(3), incremental=False)
    _serve(tmp_path, at(4), "r1")


def test_a_healthy_deployment_replays_with_zero_skew(tmp_path):
    _deployment(tmp_path)
    with _project(tmp_path) as project:
        report = project.skew(sample=None)
    assert report.rows == len(USERS) + 5 and report.requests == len(USERS) + 1
    assert report.mismatches == 0, "\n".join(report.lines())
    assert {ref: f.compared for ref, f in report.features.items()} == {
        "user.score": len(USERS) + 5, "user.tier": len(USERS), "user.seen": len(USERS), "user.limit": len(USERS),
        "user.double": len(USERS), "user.email": 0}
    assert report.features["user.email"].not_compared == 5  # logged masked: nothing to compare


def test_planted_skews_are_found_with_their_causes(tmp_path):
    _deployment(tmp_path)
    # 1. the online store falls behind: users 1-4 get newer rows that are never materialized
    newer = _profile_rows().filter(pl.col("user_id") <= 4, pl.col("ts") == at(2)).with_columns(
        ts=pl.lit(at(5)), score=pl.col("user_id") * 1000 + 0.5, tier=pl.col("tier") + "-new", seen=pl.lit(at(5, 1)))
    pl.concat([_profile_rows(), newer]).write_parquet(tmp_path / "profile.parquet")
    _serve(tmp_path, at(6), "r2")
    # 2. after serving, users 5-7's rows are rewritten in place
    rewritten = pl.read_parquet(tmp_path / "profile.parquet").with_columns(
        tier=pl.when(pl.col("user_id").is_between(5, 7) & (pl.col("ts") == at(2))).then(pl.lit("edited"))
        .otherwise(pl.col("tier")))
    rewritten.write_parquet(tmp_path / "profile.parquet")
    # 3. after serving, users 8-10 get limit rows dated before the requests but created after,
    # and user 11's row (a null limit: only its status can differ) is deleted
    late = pl.DataFrame({"user_id": [8, 9, 10], "ts": [at(3, 12)] * 3, "created": [LATER] * 3,
                         "limit": [-8, -9, -10]})
    pl.concat([_limit_rows().filter(pl.col("user_id") != 11), late]).write_parquet(tmp_path / "limits.parquet")

    with _project(tmp_path) as project:
        report = project.skew(sample=None, examples=2)
    per = {ref: (f.mismatches, dict(f.causes)) for ref, f in report.features.items()}
    assert per == {
        "user.score": (8, {"store_behind": 8}),  # users 1-4 were in the masked query too
        "user.tier": (4 + 6, {"store_behind": 4, "source_rewritten": 6}),  # users 5-7, both rounds
        "user.seen": (4, {"store_behind": 4}),
        "user.double": (4, {"store_behind": 4}),  # computed: known by its input's view
        "user.limit": (8, {"late_data": 6, "source_rewritten": 2}),
        "user.email": (0, {}),
    }, "\n".join(report.lines())
    assert report.features["user.tier"].rate == 10 / (2 * len(USERS))
    example = report.features["user.score"].examples[0]
    assert example.logged.entity == {"user_id": 1} and example.logged.request_id == "r2-1"
    assert example.offline == 1000.5 and example.logged.value == 10.5 and "row at 2024-01-02T00:00:00Z" in example.detail
    deleted = [m for m in report.features["user.limit"].examples if m.logged.entity == {"user_id": 11}]
    assert [(m.logged.value, m.logged.status, m.offline, m.offline_status) for m in deleted] == [
        (None, "present", None, "missing")] * len(deleted)
    assert "held this key through 2024-01-03T00:00:00Z" in report.features["user.double"].examples[0].detail

    # 4. the resolver's code changes: every replayed value of it differs, and says why
    with _project(tmp_path, factor=3.0) as changed:
        changed_report = changed.skew(sample=None)
    double = changed_report.features["user.double"]
    # NaN and -0.0 times 3 are what they were times 2: 7 users in round 1, 6 in round 2 (user 4 moved on)
    same = len([u for u in USERS if u % 4 == 0 and u % 3 != 2])
    differing = 2 * len(USERS) - same - (same - 1)
    assert double.mismatches == differing and dict(double.causes) == {"definition_changed": differing}
    assert changed_report.features["user.score"].mismatches == 8  # the rest as before


def test_the_sample_is_seeded_and_the_time_range_bounds_it(tmp_path):
    _deployment(tmp_path)
    _serve(tmp_path, at(6), "r2")
    with _project(tmp_path) as project:
        a, b = project.skew(sample=30, seed=7), project.skew(sample=30, seed=7)
        assert a.rows == b.rows == 30
        assert {r: f.compared for r, f in a.features.items()} == {r: f.compared for r, f in b.features.items()}
        everything = project.skew(sample=None)
        assert everything.rows == 2 * (len(USERS) + 5)
        assert project.skew(sample=None, until=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).rows == 0


def test_parity_skew_on_the_cli_reports_and_fails_on_request(tmp_path, capsys):
    _deployment(tmp_path)
    late = pl.DataFrame({"user_id": [8], "ts": [at(3, 12)], "created": [LATER], "limit": [-8]})
    pl.concat([_limit_rows(), late]).write_parquet(tmp_path / "limits.parquet")
    (tmp_path / "parity.toml").write_text('[project]\nname = "t"\ndefinitions = "defs.py"\n'
                                          '[online_store]\npath = "o.db"\n')
    (tmp_path / "defs.py").write_text("from tests.unit.test_skew import _definitions\n\n"
                                      "user, profile, limits, double, masker = _definitions()\n")
    assert main(["-C", str(tmp_path), "skew", "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    limit = next(f for f in report["features"] if f["feature"] == "user.limit")
    assert (limit["mismatches"], limit["causes"]) == (1, {"late_data": 1})
    assert limit["examples"][0]["entity"] == {"user_id": 8} and limit["examples"][0]["offline"] == -8
    assert main(["-C", str(tmp_path), "skew", "--quiet", "--fail"]) == 1
    text = capsys.readouterr().out
    assert "user.limit" in text and "late_data" in text
    assert main(["-C", str(tmp_path), "skew", "--sample", "-1"]) == 2
    assert "skew sample -1" in capsys.readouterr().err
