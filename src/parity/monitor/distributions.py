"""The tail probabilities the drift tests need, written out (no SciPy dependency for three functions).

Each is the textbook formula, checked in ``tests/unit/test_drift.py`` against published table
values: the chi-square survival function by the regularized upper incomplete gamma function
(series below ``a + 1``, Lentz's continued fraction above, as in Numerical Recipes §6.2), the
Kolmogorov distribution's survival function by its alternating series (with Stephens' small-sample
correction applied by the caller), and the normal tail by ``erfc``.
"""

from __future__ import annotations

import math

_EPS = 1e-15
_TINY = 1e-300


def chi2_sf(x: float, dof: int) -> float:
    """P(X ≥ x) for X ~ chi-square with ``dof`` degrees of freedom."""
    if x <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    if x < a + 1.0:  # the series of P converges fast here
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1.0
            term *= x / n
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - math.lgamma(a)))
    b = x + 1.0 - a  # the continued fraction of Q
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - math.lgamma(a)) * h)


def kolmogorov_sf(lam: float) -> float:
    """P(K > lam) for the Kolmogorov distribution: 2 Σ (−1)^(k−1) exp(−2 k² lam²)."""
    if lam < 0.2:  # the series needs many terms here, and the answer is 1 to 15 digits
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < _EPS:
            break
    return min(1.0, max(0.0, 2.0 * total))


def ks_two_sample_p(statistic: float, n: int, m: int) -> float:
    """The asymptotic p-value of a two-sample K-S statistic, with Stephens' correction."""
    en = math.sqrt(n * m / (n + m))
    return kolmogorov_sf((en + 0.12 + 0.11 / en) * statistic)


def normal_sf(z: float) -> float:
    """P(Z ≥ z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))
