"""parity monitor: served values against their training-set baseline, bucket by bucket — a planted
drift and a null burst found in exactly their hours, healthy hours quiet, results kept as a time
series, and an HTML report whose plots show it (checked on the rendered images)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re

import numpy as np
import polars as pl
import pytest

import parity as pt
from parity.cli.main import main
from parity.connectors.feature_log_parquet import ParquetFeatureLog
from parity.monitor.feature_log import FeatureLogger
from parity.monitor.report import ALARM, BASELINE, SERVED, render
from parity.registry.versions import Versions
from parity.errors import DataError
from parity.runtime.monitoring import HOUR_US, reference_column, watch_log

pytest.importorskip("matplotlib", reason='the report needs parity[report]: pip install -e ".[report]"')
import matplotlib.image

BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
START_US = int(dt.datetime(2024, 2, 1, tzinfo=dt.UTC).timestamp() * 1e6)
N = 5_000
PER_HOUR = 600
FEATURES = ["user.amount", "user.country"]


def definitions() -> list[object]:
    user = pt.Entity("user", keys={"user_id": pt.Int64})
    view = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                          features=[pt.Feature("amount", pt.Float64), pt.Feature("country", pt.String)])
    return [user, view]


def _project(tmp_path) -> pt.Project:  # type: ignore[no-untyped-def]
    return pt.Project.from_definitions(definitions(), root=str(tmp_path), online_store_path=str(tmp_path / "o.db"),
                                       record_baselines=True, monitor_path=str(tmp_path / ".parity" / "monitor.db"))


def _deployment(tmp_path, hours: int, planted: bool, seed: int = 0) -> None:  # type: ignore[no-untyped-def]
    """A baseline from a training set, then ``hours`` of served values logged as the server logs them;
    planted: hours 8-9 of amount shifted by +0.5 sigma, hour 10 with 30% of amounts missing."""
    rng = np.random.default_rng(seed)
    pl.DataFrame({"user_id": np.arange(N), "ts": [BASE] * N, "amount": rng.normal(50, 10, N),
                  "country": rng.choice(["DE", "FR", "NL", "IT"], N, p=[0.4, 0.3, 0.2, 0.1])}
                 ).write_parquet(tmp_path / "u.parquet")
    with _project(tmp_path) as project:
        project.training_set(pl.DataFrame({"user_id": np.arange(N), "timestamp": [BASE + dt.timedelta(days=1)] * N}),
                             FEATURES)
        versions = {ref: Versions(project.catalog).version(project.catalog.feature_at(project.catalog.parse(ref)))
                    for ref in FEATURES}
    clock = [START_US]
    logger = FeatureLogger(ParquetFeatureLog(str(tmp_path)), sample_rate=1.0, clock=lambda: clock[0])
    for hour in range(hours):
        shift = 5.0 if planted and hour in (8, 9) else 0.0
        amounts = rng.normal(50 + shift, 10, PER_HOUR)
        missing = rng.random(PER_HOUR) < (0.3 if planted and hour == 10 else 0.0)
        countries = rng.choice(["DE", "FR", "NL", "IT"], PER_HOUR, p=[0.4, 0.3, 0.2, 0.1])
        for i in range(PER_HOUR):
            clock[0] = START_US + hour * HOUR_US + i * (HOUR_US // PER_HOUR)
            value = None if missing[i] else float(amounts[i])
            logger.record([{"user_id": i}], FEATURES, versions, [{"user.amount": value, "user.country": countries[i]}],
                          [{"user.amount": "missing" if value is None else "present", "user.country": "present"}],
                          clock[0], "svc")
    logger.close()


def _alarm_hours(run, feature: str, metric: str) -> list[int]:  # type: ignore[no-untyped-def]
    watch = next(w for w in run.watches if w.feature == feature)
    return [(start - run.since_us) // HOUR_US for m, (start, _), _ in watch.alarms() if m == metric]


def test_a_planted_drift_and_null_burst_are_found_in_their_hours_and_kept_as_a_time_series(tmp_path):
    _deployment(tmp_path, hours=12, planted=True)
    with _project(tmp_path) as project:
        log = ParquetFeatureLog(str(tmp_path)).read()
        run = watch_log(project, log)
        assert (run.since_us, run.until_us, run.rows) == (START_US, START_US + 12 * HOUR_US, 12 * PER_HOUR)
        assert _alarm_hours(run, "user.amount", "drift") == [8, 9]
        assert _alarm_hours(run, "user.amount", "null_rate") == [10]
        assert _alarm_hours(run, "user.country", "drift") == [] and _alarm_hours(run, "user.country", "null_rate") == []
        statuses = {w.feature: w.status for w in run.watches}
        assert statuses == {"user.amount": "drift", "user.country": "ok"}
        amount = next(w for w in run.watches if w.feature == "user.amount")
        assert amount.period is not None and amount.period.rows == 12 * PER_HOUR
        points = project.monitor_store().points(metric="drift", feature="user.amount")
        assert [p.status for p in points] == ["ok"] * 8 + ["drift"] * 2 + ["ok"] * 2
        assert [p.window_start_us for p in points] == [START_US + h * HOUR_US for h in range(12)]
        watch_log(project, log)  # the same buckets again: replaced, not doubled
        assert len(project.monitor_store().points(feature="user.amount")) == 2 * 12
        text = "\n".join(run.lines())
        assert "user.amount" in text and "drift in 2/12 buckets, null bursts in 1" in text


def test_a_small_later_training_set_does_not_displace_the_reference_baseline(tmp_path):
    from parity.ports.monitor_store import Baseline
    from parity.runtime.baselines import reference_baseline

    _deployment(tmp_path, hours=12, planted=True)
    with _project(tmp_path) as project:  # a debugging set of 20 rows, built after the real one
        project.training_set(pl.DataFrame({"user_id": np.arange(20), "timestamp": [BASE + dt.timedelta(days=1)] * 20}),
                             FEATURES)
        assert [b.rows for b in project.baselines("user.amount")] == [N, 20]
        run = watch_log(project, ParquetFeatureLog(str(tmp_path)).read(), record=False)
    amount = next(w for w in run.watches if w.feature == "user.amount")
    assert amount.baseline is not None and amount.baseline.rows == N
    assert _alarm_hours(run, "user.amount", "drift") == [8, 9]

    def made(*rows: int) -> list[Baseline]:
        return [Baseline("f", "v", f"set {i}", i, n, {}) for i, n in enumerate(rows)]

    assert reference_baseline(made(190_000, 25, 20)).origin == "set 0"  # type: ignore[union-attr]
    assert reference_baseline(made(190_000, 5_000, 20)).origin == "set 1"  # type: ignore[union-attr]
    assert reference_baseline(made(50, 300, 300)).origin == "set 2"  # type: ignore[union-attr]
    assert reference_baseline([]) is None


def test_healthy_days_raise_no_alarm(tmp_path):
    _deployment(tmp_path, hours=24, planted=False, seed=11)
    with _project(tmp_path) as project:
        run = watch_log(project, ParquetFeatureLog(str(tmp_path)).read())
    assert {w.feature: w.status for w in run.watches} == {"user.amount": "ok", "user.country": "ok"}
    assert all(not w.alarms() for w in run.watches) and all(len(w.drift) == 24 for w in run.watches)


def test_a_fixed_reference_file_can_be_the_reference(tmp_path, capsys):
    _deployment(tmp_path, hours=12, planted=True)
    rng = np.random.default_rng(5)
    healthy = pl.DataFrame({"user.amount": rng.normal(50, 10, 20_000),
                            "user.country": rng.choice(["DE", "FR", "NL", "IT"], 20_000, p=[0.4, 0.3, 0.2, 0.1])})
    with _project(tmp_path) as project:
        log = ParquetFeatureLog(str(tmp_path)).read()
        run = watch_log(project, log, fixed_reference=(healthy, "ref.parquet"), record=False)
        amount = next(w for w in run.watches if w.feature == "user.amount")
        assert amount.baseline is not None and amount.baseline.rows == 20_000
        assert amount.baseline_origin == "ref.parquet (20,000 rows)"
        assert _alarm_hours(run, "user.amount", "drift") == [8, 9]
        assert _alarm_hours(run, "user.country", "drift") == []
        # the reference is what is compared with: one centred where hours 8-9 are finds the others
        shifted = healthy.with_columns(pl.col("user.amount") + 5).drop("user.country")
        run = watch_log(project, log, fixed_reference=(shifted, "shifted.parquet"), record=False)
        assert _alarm_hours(run, "user.amount", "drift") == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11]
        country = next(w for w in run.watches if w.feature == "user.country")
        assert country.baseline is None and country.baseline_origin == "not a column of shifted.parquet"
        assert not project.monitor_store().points(feature="user.amount")  # nothing recorded against a file
    (tmp_path / "parity.toml").write_text('[project]\nname = "t"\ndefinitions = "defs.py"\n'
                                          '[online_store]\npath = "o.db"\n')
    (tmp_path / "defs.py").write_text("from tests.unit.test_monitor import definitions\n\n"
                                      "user, profile = definitions()\n")
    healthy.write_parquet(tmp_path / "ref.parquet")
    assert main(["-C", str(tmp_path), "monitor", "--reference-file", str(tmp_path / "ref.parquet"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    alarms = next(f for f in out["features"] if f["feature"] == "user.amount")["alarms"]
    assert sorted({(a["window"][0] - START_US) // HOUR_US for a in alarms if a["metric"] == "drift"}) == [8, 9]
    healthy.with_columns(pl.col("user.amount").cast(pl.String)).write_parquet(tmp_path / "bad.parquet")
    pl.DataFrame({"amount": [1.0]}).write_parquet(tmp_path / "unnamed.parquet")
    for args, message in [(["--reference-file", str(tmp_path / "bad.parquet")], "column 'user.amount' (feature user.amount)"),
                          (["--reference-file", str(tmp_path / "unnamed.parquet")], "no column named by a watched"),
                          (["--reference-file", str(tmp_path / "nope.parquet")], "cannot read it as Parquet"),
                          (["--reference-file", "r.parquet", "--reference-since", "2024-02-01T00:00:00Z",
                            "--reference-until", "2024-02-01T06:00:00Z"], "not both")]:
        assert main(["-C", str(tmp_path), "monitor", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    # only a training set fixes a version's bins: a reference compared before any is fitted for its run
    fresh = pt.Project.from_definitions(definitions(), root=str(tmp_path), online_store_path=str(tmp_path / "o.db"),
                                        monitor_path=str(tmp_path / "fresh.db"))
    with fresh:
        run = watch_log(fresh, ParquetFeatureLog(str(tmp_path)).read(), fixed_reference=(healthy, "ref.parquet"))
        assert _alarm_hours(run, "user.amount", "drift") == [8, 9]
        version = Versions(fresh.catalog).version(fresh.catalog.feature_at(fresh.catalog.parse("user.amount")))
        assert fresh.monitor_store().bins("user.amount", version) is None
        # an older version in the log is not compared with a file of the definitions now
        fresh.monitor_store().fix_bins("user.amount", "v-old", run.watches[0].bins.to_dict())  # type: ignore[union-attr]
        logger = FeatureLogger(ParquetFeatureLog(str(tmp_path / "old")), sample_rate=1.0, clock=lambda: START_US)
        for i in range(200):
            logger.record([{"user_id": i}], ["user.amount"], {"user.amount": "v-old"}, [{"user.amount": 50.0 + i % 7}],
                          [{"user.amount": "present"}], START_US, "svc")
        logger.close()
        old = watch_log(fresh, ParquetFeatureLog(str(tmp_path / "old")).read(), fixed_reference=(healthy, "ref.parquet"),
                        record=False)
        (watched,) = old.watches
        assert (watched.version, watched.baseline) == ("v-old", None)
        assert watched.baseline_origin == "an older version: ref.parquet is compared with the current one only"
    # a value its feature's dtype cannot hold is named by its row, by the one reading rule
    with pytest.raises(DataError, match=r"ref.parquet, column 'user.n', row 1: 2.5 does not fit feature user.n \(Int64\)"):
        reference_column(pl.DataFrame({"user.n": [1.0, 2.5]}), "user.n", pt.Int64, "ref.parquet")
    assert reference_column(pl.DataFrame({"user.n": [1.0, None]}), "user.n", pt.Int64, "r").to_list() == [1, None]


def _images(report: str) -> dict[str, np.ndarray]:
    found = re.findall(r"<img class='plot' data-plot='([^']+)' alt='([^:]+): [^']+' src='data:image/png;base64,([^']+)'",
                       report)
    return {f"{feature}/{plot}": matplotlib.image.imread(io.BytesIO(base64.b64decode(data)), format="png")
            for plot, feature, data in found}


def _has(image: np.ndarray, colour: str, at_least: int = 40) -> bool:
    """Whether the rendered plot has at least that many pixels of the colour (a legend entry alone
    has about 20; a drawn distribution several hundred)."""
    rgb = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(image[..., :3] - rgb).max(axis=-1) < 0.05).sum() >= at_least)


def test_the_html_report_is_self_contained_and_its_plots_show_what_was_found(tmp_path):
    _deployment(tmp_path, hours=12, planted=True)
    with _project(tmp_path) as project:
        run = watch_log(project, ParquetFeatureLog(str(tmp_path)).read(), record=False)
    report = render(run.watches, title="t", generated_at=dt.datetime(2024, 2, 2, tzinfo=dt.UTC))
    assert "<script" not in report and "http://" not in report and "https://" not in report  # nothing fetched
    images = _images(report)
    assert sorted(images) == sorted(f"{f}/{p}" for f in FEATURES for p in
                                    ("distribution vs baseline", "drift per bucket", "null rate per bucket"))
    for feature in FEATURES:  # both distributions drawn, baseline and served
        assert _has(images[f"{feature}/distribution vs baseline"], BASELINE, 300)
        assert _has(images[f"{feature}/distribution vs baseline"], SERVED, 300)
    assert _has(images["user.amount/drift per bucket"], ALARM)  # the drifting hours marked
    assert _has(images["user.amount/null rate per bucket"], ALARM)
    assert not _has(images["user.country/drift per bucket"], ALARM)  # quiet: nothing marked
    assert not _has(images["user.country/null rate per bucket"], ALARM)
    assert "<b>drift</b> 2024-02-01 08:00" in report and "<b>null_rate</b> 2024-02-01 10:00" in report


def test_parity_monitor_on_the_cli_writes_the_report_and_fails_on_request(tmp_path, capsys):
    _deployment(tmp_path, hours=12, planted=True)
    (tmp_path / "parity.toml").write_text('[project]\nname = "t"\ndefinitions = "defs.py"\n'
                                          '[online_store]\npath = "o.db"\n')
    (tmp_path / "defs.py").write_text("from tests.unit.test_monitor import definitions\n\n"
                                      "user, profile = definitions()\n")
    out = tmp_path / "report.html"
    assert main(["-C", str(tmp_path), "monitor", "--html", str(out), "--fail"]) == 1
    text = capsys.readouterr().out
    assert "user.amount" in text and f"report: {out}" in text
    assert out.read_text().startswith("<!doctype html>") and not list(tmp_path.glob("report.html.partial-*"))
    assert main(["-C", str(tmp_path), "monitor", "--features", "user.country", "--json", "--no-record"]) == 0
    (only,) = json.loads(capsys.readouterr().out)["features"]
    assert (only["feature"], only["status"], only["alarms"]) == ("user.country", "ok", [])
    assert main(["-C", str(tmp_path), "monitor", "--bucket", "soon"]) == 2
    assert "--bucket" in capsys.readouterr().err


def test_a_past_window_of_served_values_can_be_the_reference(tmp_path, capsys):
    _deployment(tmp_path, hours=12, planted=True)
    frame = pl.from_arrow(ParquetFeatureLog(str(tmp_path)).read())
    assert isinstance(frame, pl.DataFrame)
    past = frame.filter(pl.col("served_at_us") < START_US + 6 * HOUR_US)  # hours 0-5: healthy
    with _project(tmp_path) as project:
        run = watch_log(project, frame.to_arrow(), since_us=START_US + 6 * HOUR_US, reference=past, record=False)
    amount = next(w for w in run.watches if w.feature == "user.amount")
    assert amount.baseline is not None and amount.baseline.rows == 6 * PER_HOUR
    assert "reference window" in amount.baseline_origin
    assert _alarm_hours(run, "user.amount", "drift") == [2, 3]  # hours 8 and 9, counted from hour 6
    assert _alarm_hours(run, "user.country", "drift") == []
    (tmp_path / "parity.toml").write_text('[project]\nname = "t"\ndefinitions = "defs.py"\n'
                                          '[online_store]\npath = "o.db"\n')
    (tmp_path / "defs.py").write_text("from tests.unit.test_monitor import definitions\n\n"
                                      "user, profile = definitions()\n")
    iso = lambda us: dt.datetime.fromtimestamp(us / 1e6, dt.UTC).isoformat()  # noqa: E731
    assert main(["-C", str(tmp_path), "monitor", "--since", iso(START_US + 6 * HOUR_US), "--reference-since",
                 iso(START_US), "--reference-until", iso(START_US + 6 * HOUR_US), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    amount_alarms = next(f for f in out["features"] if f["feature"] == "user.amount")["alarms"]
    assert sorted({(a["window"][0] - START_US) // HOUR_US for a in amount_alarms if a["metric"] == "drift"}) == [8, 9]
    assert main(["-C", str(tmp_path), "monitor", "--reference-since", iso(START_US)]) == 2
