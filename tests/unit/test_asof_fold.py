"""The as-of kernel folds (key, time) into one unsigned 64-bit integer when it fits, and sorts two
columns when it does not: both give the same choices, at the edges of the fold's range too."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from parity.semantics import asof
from parity.semantics.ordering import CREATED, EVENT, SEQUENCE


def _rows(keys: np.ndarray, events: np.ndarray) -> pl.DataFrame:
    n = len(keys)
    return pl.DataFrame({"k": keys, EVENT: events, CREATED: events, SEQUENCE: np.arange(n), "v": np.arange(n) * 10})


@pytest.mark.parametrize("key_span,time_span", [
    (1_000_000, 5_200_000_000_000),  # a million keys over two months of µs: past 62 bits, within 64
    (2**32, 2**32 - 1),  # (k1 - k0 + 1) * span just under 2^64
    (2**32, 2**32 + 1),  # just over: two sorted columns
    (2**62, 1),
])
def test_folded_and_unfolded_choices_agree(key_span: int, time_span: int, monkeypatch) -> None:
    rng = np.random.default_rng(key_span % 1000 + time_span % 1000)
    n = 4_000
    base = -(2**40)
    keys = np.concatenate([[base, base + key_span - 1], base + rng.integers(0, key_span, n)]).astype(np.int64)
    keys[5:2000] = keys[5:2000] % 50 + base  # many rows per key, so choices depend on time
    keys[2000:2100] = base + key_span - 1  # and at the top of the range, where a fold would overflow first
    events = np.concatenate([[0, time_span - 1], rng.integers(0, time_span, n)]).astype(np.int64)
    rows = _rows(keys, events)
    probe_keys = np.concatenate([keys[:300], keys[2000:2100], [base - 1]])
    probes = pl.DataFrame({"k": probe_keys, asof.PROBE_TIME: rng.integers(0, time_span, len(probe_keys)).astype(np.int64)})
    folded = asof.choose(asof.prepare(rows, ["k"], uses_created=False), probes, ["k"])
    monkeypatch.setattr(asof, "_fits", lambda *_: False)
    unfolded = asof.choose(asof.prepare(rows, ["k"], uses_created=False), probes, ["k"])
    assert folded.to_list() == unfolded.to_list()
    assert folded.null_count() < len(probe_keys)  # some probes found a row: the comparison says something


@pytest.mark.parametrize("uses_created", [False, True])
def test_ties_in_key_and_time_are_ordered_by_created_then_ingestion_order(uses_created: bool, monkeypatch) -> None:
    """Rows tied on (key, event) — many per run, with created times and ingestion orders that
    disagree with the rows' order in the frame — are ranked by (created, sequence) on the packed
    sort exactly as on the plain multi-column sort, probes at every tied instant included."""
    rng = np.random.default_rng(7)
    n = 6_000
    keys = rng.integers(0, 40, n).astype(np.int64)
    events = rng.integers(0, 60, n).astype(np.int64) * 1_000  # ~2.5 rows per (key, event): ties everywhere
    created = events + rng.integers(0, 3, n).astype(np.int64) * 500  # equal created times too, and later ones
    sequence = rng.permutation(n).astype(np.int64)  # the frame is not in ingestion order
    rows = pl.DataFrame({"k": keys, EVENT: events, CREATED: created, SEQUENCE: sequence, "v": np.arange(n)})
    times = np.concatenate([events[:800], events[:800] + 500, events[:400] - 1]).astype(np.int64)
    probes = pl.DataFrame({"k": np.concatenate([keys[:800], keys[:800], keys[:400]]), asof.PROBE_TIME: times})

    def chosen() -> list[int | None]:
        prepared = asof.prepare(rows, ["k"], uses_created=uses_created)
        return asof.gather(prepared, asof.choose(prepared, probes, ["k"]), ["v"])["v"].to_list()

    packed = chosen()
    monkeypatch.setattr(asof, "_fits", lambda *_: False)
    assert packed == chosen()
    assert sum(v is not None for v in packed) > len(packed) // 2
