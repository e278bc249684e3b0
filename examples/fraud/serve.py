"""Run the server part of the example: `parity serve`, queried with `parity.Client` and with curl.

Run from a project made by ``parity init`` and materialized. Creates a token per role of
``features/access.py``, starts the server on a free loopback port, asks it for the fraud features of
20 transactions as the scoring service (``user.email`` comes back masked) and checks every value
against ``Project.query`` with the same principal; shows the support desk refused; stops the
server and verifies the audit trail. Exits 1 on any difference.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
import time

import polars as pl

import parity as pt
from parity.errors import AccessDenied
from parity.semantics.values import same_value

FEATURES = [
    "transaction.amount", "transaction.user.country", "transaction.user.email", "transaction.user.account_age_days",
    "transaction.user.txn_count_7d", "transaction.is_foreign", "transaction.risk_bucket",
    "transaction.card.txn_count[10m]", "transaction.user.distinct_merchants[30d]", "transaction.velocity_alert",
]


def parity_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "parity", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"parity {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    scoring = parity_cli("token", "create", "--principal", "payments-authoriser", "--role", "fraud_scoring")
    support = parity_cli("token", "create", "--principal", "support-desk", "--role", "support_desk")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "parity", "serve", "--port", str(port), "--workers", "2"])
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/v1/health")
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("parity serve did not start") from None
                time.sleep(0.2)
        print(f"server up at {url} (2 workers)")

        ids = pl.read_parquet("data/labels.parquet").sample(20, seed=2)["transaction_id"].to_list()
        entities = {"transaction_id": ids}
        now = dt.datetime.now(dt.timezone.utc)  # one `now` for both: account_age_days depends on it
        with pt.Client(url, scoring) as client:
            served = client.query(entities, FEATURES, now=now, with_status=True)
        project = pt.Project.load(".")
        try:
            local = project.query(entities, FEATURES, now=now, with_status=True,
                                  principal=pt.Principal("payments-authoriser", ["fraud_scoring"]))
        finally:
            project.close()
        mismatches = 0
        for i, tid in enumerate(ids):
            for ref in FEATURES:
                a, b = served.details[i][ref], local.details[i][ref]  # type: ignore[index]
                if not same_value(a.value, b.value) or a.status != b.status or a.event_time != b.event_time:
                    mismatches += 1
                    print(f"MISMATCH {tid} {ref}: served {a!r} in-process {b!r}")
        masked = {served.details[i]["transaction.user.email"].status for i in range(len(ids))}  # type: ignore[index]
        print(f"client: {len(ids)} transactions x {len(FEATURES)} features over HTTP == Project.query: "
              f"{mismatches} mismatches; transaction.user.email is {'/'.join(sorted(masked))} (pii)")

        if shutil.which("curl"):
            body = json.dumps({"entities": {"transaction_id": ids[:1]},
                               "features": ["transaction.amount", "transaction.user.email"]})
            out = subprocess.run(["curl", "-s", url + "/v1/query", "-H", f"Authorization: Bearer {support}",
                                  "-d", body], capture_output=True, text=True).stdout
            print(f"curl as the support desk: {out}")
        with pt.Client(url, support) as client:
            try:
                client.query(entities, ["transaction.amount"])
                print("DENIAL MISSING: the support desk read transaction.amount")
                mismatches += 1
            except AccessDenied as exc:
                print(f"support desk refused: {exc}")
            print(f"support desk may read: {[f['feature'] for f in client.catalog()]}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    verdict = parity_cli("audit", "verify")
    refused = parity_cli("audit", "search", "--outcome", "forbidden").splitlines()
    print(f"audit: {verdict}; {len(refused)} refused request(s) on record")
    return 1 if mismatches or not verdict.endswith("OK") else 0


if __name__ == "__main__":
    sys.exit(main())
