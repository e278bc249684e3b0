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
