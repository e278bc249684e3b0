"""The server's batched metrics write what per-request writes would have: same buckets, same sums."""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import generate_latest  # noqa: E402

from parity.server import metrics  # noqa: E402


def _samples(metric: object) -> dict[str, float]:
    found = {}
    for family in metric.collect():  # type: ignore[attr-defined]
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                suffix = sample.name.rsplit("_", 1)[-1]  # bucket, count, sum
                found[f"{suffix}{{{labels}}}"] = sample.value
    return found


def test_pending_observations_fill_the_buckets_observe_would():
    direct = metrics._histogram("parity_test_direct_seconds", "d", ["kind"], (0.001, 0.01, 0.1))
    batched = metrics._histogram("parity_test_batched_seconds", "b", ["kind"], (0.001, 0.01, 0.1))
    pending = metrics.Pending()
    # values on every bound (a bound holds its own value: le), between, below and past the last
    values = [0.0, 0.0005, 0.001, 0.0010001, 0.005, 0.01, 0.05, 0.1, 0.2, 7.0]
    for value in values:
        direct.labels("a").observe(value)
        pending.observe(batched, ("a",), value)
    assert not any(_samples(batched).values())  # nothing before the flush
    pending.flush()
    assert _samples(batched) == _samples(direct)
    counter = metrics.Counter("parity_test_batched_total", "c", ["outcome"])
    for _ in range(3):
        pending.count(counter, ("ok",))
    pending.count(counter, ("ok",), 2.5)
    pending.flush()
    pending.flush()  # a second flush adds nothing
    assert counter.labels("ok")._value.get() == 5.5
    assert b"parity_test_batched_seconds_bucket" in generate_latest()
