"""The compiled kernel of offline windows: one key partition at a time, plain arrays in and out.

Events arrive sorted by (key code, ``ordering.ROW_ORDER``); each query is (key block, t, width).
For every query the kernel finds the window's index range by two binary searches on the event
times of its key, then reads only the events in it that are visible at t (``semantics.windows``)
and pass the aggregate's mask. Numeric states are exact: each value is added, as integer terms,
into 32-bit limbs held in int64 (no carry can overflow for fewer than 2^31 events), and a limb
number is rounded to a double exactly once (``round_limbs``: round half to even, subnormals
included) — the same bits as ``semantics.windows.ratio_to_float`` on the exact integers.

The functions take and return numpy arrays only, so a partitioned executor (Spark's
``mapInArrow``) can run them unchanged on its own partitions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit

F = TypeVar("F", bound=Callable[..., Any])


def _compiled(fn: F) -> F:
    """Compile with numba (cached on disk, releasing the GIL), keeping the Python signature for mypy."""
    return cast(F, njit(cache=True, nogil=True)(fn))

MASK32 = 0xFFFFFFFF
PAD = 4  # zero limbs put below a numerator before dividing: ≥ 64 more quotient bits than needed


@_compiled
def ranges(block_start: np.ndarray, block_end: np.ndarray, ev: np.ndarray, t: np.ndarray,
           width: int, lifetime: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per query, [lo, hi): the events of its key with t − width < event time ≤ t."""
    n = t.shape[0]
    lo = np.empty(n, np.int64)
    hi = np.empty(n, np.int64)
    for q in range(n):
        a, b = block_start[q], block_end[q]
        hi[q] = a + np.searchsorted(ev[a:b], t[q], side="right")
        lo[q] = a if lifetime else a + np.searchsorted(ev[a:b], t[q] - width, side="right")
    return lo, hi


@_compiled
def count(lo: np.ndarray, hi: np.ndarray, vis: np.ndarray, t: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros(t.shape[0], np.int64)
    for q in range(t.shape[0]):
        c = 0
        for i in range(lo[q], hi[q]):
            if vis[i] <= t[q] and mask[i]:
                c += 1
        out[q] = c
    return out


@njit(cache=True, nogil=True, inline="always")
def _add_term(limbs: np.ndarray, row: int, v: int, shift: int) -> None:
    if v == 0:
        return
    neg = v < 0
    a = -v if neg else v
    q = shift >> 5
    low_bits = 32 - (shift & 31)
    chunk = (a & ((1 << low_bits) - 1)) << (shift & 31)
    limbs[row, q] += -chunk if neg else chunk
    a >>= low_bits
    k = q + 1
    while a:
        chunk = a & MASK32
        limbs[row, k] += -chunk if neg else chunk
        a >>= 32
        k += 1


@_compiled
def moments_float(lo: np.ndarray, hi: np.ndarray, vis: np.ndarray, t: np.ndarray, mask: np.ndarray,
                  mantissa: np.ndarray, shift: np.ndarray, special: np.ndarray, limbs: int, sq_limbs: int,
                  squares: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact (n, specials, Σx, Σx²) of float values x = mantissa·2^(shift + E0) per query.

    ``special``: 0 finite, 1 NaN, 2 +inf, 3 -inf. Σx² is relative to 2^(2·E0)."""
    nq = t.shape[0]
    n = np.zeros(nq, np.int64)
    specials = np.zeros((nq, 3), np.int64)
    sums = np.zeros((nq, limbs), np.int64)
    sqs = np.zeros((nq, sq_limbs if squares else 1), np.int64)
    for q in range(nq):
        for i in range(lo[q], hi[q]):
            if vis[i] > t[q] or not mask[i]:
                continue
            n[q] += 1
            if special[i]:
                specials[q, special[i] - 1] += 1
                continue
            m = mantissa[i]
            s = shift[i]
            _add_term(sums, q, m, s)
            if squares:
                a = abs(m) >> 27
                b = abs(m) & ((1 << 27) - 1)
                _add_term(sqs, q, a * a, 2 * s + 54)
                _add_term(sqs, q, 2 * a * b, 2 * s + 27)
                _add_term(sqs, q, b * b, 2 * s)
    return n, specials, sums, sqs


@_compiled
def moments_int(lo: np.ndarray, hi: np.ndarray, vis: np.ndarray, t: np.ndarray, mask: np.ndarray,
                values: np.ndarray, squares: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact (n, Σx, Σx²) of int64 values per query, as 22-bit digits x = d2·2^44 + d1·2^22 + d0."""
    nq = t.shape[0]
    n = np.zeros(nq, np.int64)
    sums = np.zeros((nq, 5), np.int64)
    sqs = np.zeros((nq, 7 if squares else 1), np.int64)
    d = np.zeros(3, np.int64)
    low = (1 << 22) - 1
    for q in range(nq):
        for i in range(lo[q], hi[q]):
            if vis[i] > t[q] or not mask[i]:
                continue
            n[q] += 1
            x = values[i]
            d[0] = x & low
            d[1] = (x >> 22) & low
            d[2] = x >> 44  # signed
            for j in range(3):
                _add_term(sums, q, d[j], 22 * j)
            if squares:
                for j in range(3):
                    for k in range(j, 3):
                        _add_term(sqs, q, d[j] * d[k] * (1 if j == k else 2), 22 * (j + k))
    return n, sums, sqs


@_compiled
def normalize(limbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of limbs as (negative?, nonnegative 32-bit limbs of the magnitude)."""
    nq, width = limbs.shape
    out = np.zeros((nq, width + 1), np.int64)
    negative = np.zeros(nq, np.bool_)
    for q in range(nq):
        carry = 0
        for k in range(width):
            v = limbs[q, k] + carry
            out[q, k] = v & MASK32
            carry = v >> 32
        out[q, width] = carry & MASK32
        if carry < 0:
            negative[q] = True
            carry = 0
            for k in range(width + 1):
                v = -out[q, k] + carry
                out[q, k] = v & MASK32
                carry = v >> 32
    return negative, out


@_compiled
def _round_row(work: np.ndarray, base_exp: int, sticky: bool, negative: bool) -> float:
    h = work.shape[0] - 1
    while h >= 0 and work[h] == 0:
        h -= 1
    if h < 0:
        return -0.0 if (negative and sticky) else 0.0
    top = work[h]
    nb = 0
    while top >> nb:
        nb += 1
    w1 = work[h - 1] if h >= 1 else 0
    w2 = work[h - 2] if h >= 2 else 0
    for k in range(h - 2):
        if work[k]:
            sticky = True
    big = work[h] << (63 - nb)
    if nb <= 31:
        big |= w1 << (31 - nb)
    else:
        big |= w1 >> (nb - 31)
        if w1 & 1:
            sticky = True
    big |= w2 >> (nb + 1)
    if w2 & ((1 << (nb + 1)) - 1):
        sticky = True
    exponent = 32 * (h - 2) + nb + 1 + base_exp  # of big's lowest bit
    precision = 53
    if exponent + 62 < -1022:
        precision = exponent + 1137
    if precision < 0:
        return -0.0 if negative else 0.0
    drop = 63 - precision
    mant = big >> drop
    rest = big & ((1 << drop) - 1)
    half = 1 << (drop - 1)
    if rest > half or (rest == half and (sticky or (mant & 1))):
        mant += 1
    value = math.ldexp(float(mant), exponent + drop)
    return -value if negative else value


@_compiled
def round_limbs(limbs: np.ndarray, base_exp: int, divisor: np.ndarray) -> np.ndarray:
    """Each row's exact value Σ limb_k·2^(32k + base_exp), divided by ``divisor`` (1 ≤ d < 2^31),
    correctly rounded to a double."""
    negative, magnitude = normalize(limbs)
    nq, width = magnitude.shape
    out = np.empty(nq, np.float64)
    work = np.zeros(width + PAD, np.int64)
    for q in range(nq):
        d = divisor[q]
        sticky = False
        if d == 1:
            for k in range(width):
                work[k + PAD] = magnitude[q, k]
            for k in range(PAD):
                work[k] = 0
        else:
            for k in range(PAD):
                work[k] = 0
            for k in range(width):
                work[k + PAD] = magnitude[q, k]
            rem = 0
            for k in range(width + PAD - 1, -1, -1):
                cur = (rem << 32) | work[k]
                work[k] = cur // d
                rem = cur - work[k] * d
            sticky = rem != 0
        out[q] = _round_row(work, base_exp - 32 * PAD, sticky, negative[q])
    return out


@_compiled
def extreme(lo: np.ndarray, hi: np.ndarray, vis: np.ndarray, t: np.ndarray, mask: np.ndarray,
            order: np.ndarray, want_max: bool) -> np.ndarray:
    """Per query, the index of the event with the least (or greatest) order key; -1 if none."""
    out = np.full(t.shape[0], -1, np.int64)
    for q in range(t.shape[0]):
        best = -1
        for i in range(lo[q], hi[q]):
            if vis[i] > t[q] or not mask[i]:
                continue
            if best < 0 or (order[i] > order[best] if want_max else order[i] < order[best]):
                best = i
        out[q] = best
    return out


@_compiled
def first_last(lo: np.ndarray, hi: np.ndarray, vis: np.ndarray, t: np.ndarray, mask: np.ndarray,
               last: bool) -> np.ndarray:
    """Per query, the index of the window's first (or last) event in row order; -1 if none."""
    out = np.full(t.shape[0], -1, np.int64)
    for q in range(t.shape[0]):
        if last:
            for i in range(hi[q] - 1, lo[q] - 1, -1):
                if vis[i] <= t[q] and mask[i]:
                    out[q] = i
                    break
        else:
            for i in range(lo[q], hi[q]):
                if vis[i] <= t[q] and mask[i]:
                    out[q] = i
                    break
    return out


@_compiled
def distinct(lo: np.ndarray, hi: np.ndarray, vis: np.ndarray, t: np.ndarray, mask: np.ndarray,
             codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Per query, how many distinct value codes its window holds."""
    stamp = np.full(n_codes, -1, np.int64)
    out = np.zeros(t.shape[0], np.int64)
    for q in range(t.shape[0]):
        c = 0
        for i in range(lo[q], hi[q]):
            if vis[i] <= t[q] and mask[i] and stamp[codes[i]] != q:
                stamp[codes[i]] = q
                c += 1
        out[q] = c
    return out


@_compiled
def last_distinct(lo: np.ndarray, hi: np.ndarray, vis: np.ndarray, t: np.ndarray, mask: np.ndarray,
                  codes: np.ndarray, n_codes: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, up to n distinct codes from the newest event back: (codes [Q×n], how many)."""
    stamp = np.full(n_codes, -1, np.int64)
    out = np.full((t.shape[0], n), -1, np.int64)
    found = np.zeros(t.shape[0], np.int64)
    for q in range(t.shape[0]):
        c = 0
        for i in range(hi[q] - 1, lo[q] - 1, -1):
            if c == n:
                break
            if vis[i] <= t[q] and mask[i] and stamp[codes[i]] != q:
                stamp[codes[i]] = q
                out[q, c] = codes[i]
                c += 1
        found[q] = c
    return out, found


@_compiled
def hll(lo: int, hi: int, vis: np.ndarray, t: int, mask: np.ndarray, hashes: np.ndarray, p: int) -> np.ndarray:
    """The HyperLogLog registers of one window (``semantics.windows.hll_registers``)."""
    registers = np.zeros(1 << p, np.int64)
    rest_bits = 64 - p
    for i in range(lo, hi):
        if vis[i] > t or not mask[i]:
            continue
        h = hashes[i]
        index = (h >> rest_bits) & ((1 << p) - 1)
        rest = h & ((1 << rest_bits) - 1)
        length = 0
        while rest >> length:
            length += 1
        rank = rest_bits - length + 1
        registers[index] = max(registers[index], rank)
    return registers


@_compiled
def kth_bucket(lo: np.ndarray, hi: np.ndarray, vis: np.ndarray, t: np.ndarray, mask: np.ndarray,
               buckets: np.ndarray, numerator: int, denominator: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the bucket of the nearest-rank ``numerator/denominator`` quantile (found: 0/1)."""
    out = np.zeros(t.shape[0], np.int64)
    found = np.zeros(t.shape[0], np.bool_)
    scratch = np.empty(buckets.shape[0], np.int64)
    for q in range(t.shape[0]):
        c = 0
        for i in range(lo[q], hi[q]):
            if vis[i] <= t[q] and mask[i]:
                scratch[c] = buckets[i]
                c += 1
        if c == 0:
            continue
        rank = max(1, -(-(numerator * c) // denominator))
        out[q] = np.partition(scratch[:c], rank - 1)[rank - 1]
        found[q] = True
    return out, found
