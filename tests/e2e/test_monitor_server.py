"""Monitors in the server: scheduled in one worker, a webhook called once per breach, results over
the HTTP API (deny by default, only what the principal may see) and in the metrics."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl

from tests.e2e.serving import free_port, start_server

DEFS = '''
import datetime as dt
import parity as pt

user = pt.Entity("user", keys={"user_id": pt.Int64})
profile = pt.FeatureView("profile", entity=user, source=pt.ParquetSource("u", path="u.parquet", event_time="ts"),
                         features=[pt.Feature("amount", pt.Float64), pt.Feature("country", pt.String)])
merchant = pt.Entity("merchant", keys={"merchant_id": pt.Int64})
merchants = pt.FeatureView("merchants", entity=merchant,
                           source=pt.ParquetSource("m", path="m.parquet", event_time="ts"),
                           features=[pt.Feature("risk", pt.Float64)], freshness=dt.timedelta(hours=1))

ops = pt.Role("ops", grants=[pt.Grant(entity="user"), pt.Grant(entity="merchant")], metrics=True)
merchant_ops = pt.Role("merchant_ops", grants=[pt.Grant(entity="merchant")], metrics=True)
scoring = pt.Role("scoring", grants=[pt.Grant(entity="user")])
'''


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []  # type: ignore[type-arg]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _parity(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parity", "-C", str(root), *args], capture_output=True, text=True)


def test_scheduled_monitors_call_the_webhook_once_and_serve_their_results(tmp_path, monkeypatch):
    import datetime as dt

    import parity as pt
    from parity.connectors.feature_log_parquet import ParquetFeatureLog
    from parity.monitor.feature_log import FeatureLogger
    from parity.registry.versions import Versions

    port = free_port()
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    monkeypatch.setenv("PARITY_TEST_MONITOR_WEBHOOK", f"http://127.0.0.1:{port}/hook")
    root = tmp_path
    (root / "parity.toml").write_text('[project]\nname = "watched"\ndefinitions = "defs.py"\n'
                                      '[monitor]\ninterval = "1s"\nbucket = "1h"\n'
                                      'webhook = "env:PARITY_TEST_MONITOR_WEBHOOK"\n')
    (root / "defs.py").write_text(textwrap.dedent(DEFS))
    rng = np.random.default_rng(0)
    n = 3_000
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    pl.DataFrame({"user_id": np.arange(n), "ts": [base] * n, "amount": rng.normal(50, 10, n),
                  "country": rng.choice(["DE", "FR"], n)}).write_parquet(root / "u.parquet")
    pl.DataFrame({"merchant_id": [1], "ts": [base], "risk": [0.5]}).write_parquet(root / "m.parquet")  # stale
    with pt.Project.load(str(root)) as project:  # a deployment's training set records the baselines
        project.training_set(pl.DataFrame({"user_id": np.arange(n), "timestamp": [base + dt.timedelta(days=1)] * n}),
                             ["user.amount", "user.country"])
        versions = {r: Versions(project.catalog).version(project.catalog.feature_at(project.catalog.parse(r)))
                    for r in ("user.amount", "user.country")}
    logger = FeatureLogger(ParquetFeatureLog(str(root)), sample_rate=1.0)  # served now, drifting by +1 sigma
    for i, amount in enumerate(rng.normal(60, 10, 600)):
        logger.record([{"user_id": i}], ["user.amount", "user.country"], versions,
                      [{"user.amount": float(amount), "user.country": ["DE", "FR"][i % 2]}],
                      [{"user.amount": "present", "user.country": "present"}], time.time_ns() // 1000, "svc")
    logger.close()
    tokens = {role: _parity(root, "token", "create", "--principal", f"{role}-svc", "--role", role).stdout.strip()
              for role in ("ops", "merchant_ops", "scoring")}
    proc, url = start_server(root)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not {b["feature"] for b in _Hook.received} >= {"user.amount",
                                                                                              "view merchants"}:
            time.sleep(0.2)
        time.sleep(3)  # a few more runs, by either worker: no breach is sent twice
        drift = [b for b in _Hook.received if b["feature"] == "user.amount"]
        assert [b["metric"] for b in drift] == ["drift"], _Hook.received
        assert drift[0]["value"] > drift[0]["threshold"] and drift[0]["contributors"]
        stale = [b for b in _Hook.received if b["feature"] == "view merchants"]
        assert [b["metric"] for b in stale] == ["freshness"] and "expected an event within" in stale[0]["broken"][0]
        assert not [b for b in _Hook.received if b["feature"] == "user.country"]  # healthy: quiet

        def get(token: str | None, **params: str) -> httpx.Response:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            return httpx.get(url + "/v1/monitor", params=params, headers=headers)

        points = get(tokens["ops"], metric="drift").json()["points"]
        assert {(p["feature"], p["status"]) for p in points} >= {("user.amount", "drift"), ("user.country", "ok")}
        only_merchants = get(tokens["merchant_ops"]).json()["points"]
        assert {p["feature"] for p in only_merchants} == {"view merchants"}  # user features are not its to see
        assert get(None).status_code == 401
        assert get(tokens["scoring"]).status_code == 403  # no metrics=True: denied
        bad = get(tokens["ops"], limit="0")
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "limit"
        assert get(tokens["ops"], since="yesterday").json()["error"]["field"] == "since"
        scraped = httpx.get(url + "/v1/metrics", headers={"Authorization": f"Bearer {tokens['ops']}"}).text
        assert 'parity_monitor_alarm{feature="user.amount",metric="drift"' in scraped
        alarm = next(line for line in scraped.splitlines()
                     if line.startswith('parity_monitor_alarm{feature="user.amount",metric="drift"'))
        assert alarm.endswith(" 1.0")
        assert "parity_monitor_webhooks_total" in scraped
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        hook.shutdown()
    assert str(port) not in (proc.stderr.read() if proc.stderr else "")  # the webhook URL is never logged
