"""Confidence intervals of a mean over seeds.

A cell's seeds are a handful of independent runs (3 to 5). A percentile bootstrap of the
mean over 3 values returns [min, max], which covers the true mean about 75% of the time
for normal data, not 95%. The Student-t interval mean +- t_{(1+c)/2, n-1} s / sqrt(n) is
exact for normal values and close for the smooth, bounded metrics reported here."""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
INTERVAL_METHOD = "Student-t 95% interval of the mean over seeds"


def finite_values(values) -> np.ndarray:
    """The values as floats, without None, NaN and infinities (which have no mean)."""
    v = np.asarray([float(x) for x in values if x is not None], dtype=float)
    return v[np.isfinite(v)]


def mean_ci(values, confidence: float = CONFIDENCE,
            bounds: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean over seeds and its Student-t interval.

    No values: (nan, nan, nan). One value: (v, nan, nan), "no interval": one seed says
    nothing about the spread. All values equal: (v, v, v). `bounds`: the quantity's range
    (a probability, an AUROC), to which the interval is clipped; clipping changes no
    coverage, since the true mean lies in the range."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    v = finite_values(values)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if np.all(v == v[0]):   # exact, without the rounding of a mean of equal floats
        return (float(v[0]), math.nan, math.nan) if len(v) == 1 else (float(v[0]),) * 3
    n, mean = len(v), float(v.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return mean, lo, hi


def seeds_text(seeds: int | Iterable[int], confidence: float = CONFIDENCE) -> str:
    """'(n = 5 seeds, Student-t 95%)'; a range when curves have different seed counts."""
    counts = sorted({seeds} if isinstance(seeds, int) else set(seeds))
    n = (str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}") if counts else "0"
    unit = "seed" if counts == [1] else "seeds"
    return f"(n = {n} {unit}, Student-t {100 * confidence:g}%)"


# Departure levels are discrete, censored (a seed that never departs has no level) and
# skewed, so their interval is distribution-free: order statistics of the seeds' levels
# around the median, never outside the levels seen and exact for any continuous law.
DEPARTURE_METHOD = ("median over seeds with the order-statistic interval for the median "
                    "(distribution-free; coverage stated per row)")


def median_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """(median, lo, hi, coverage) of values that may include +inf (censored: beyond the
    highest level). [x_(r), x_(n+1-r)] covers the population median with probability
    1 - 2 P(Binomial(n, 1/2) <= r - 1) (David & Nagaraja 2003, "Order Statistics",
    sec. 7.1); r is the largest with coverage >= `confidence`, else r = 1 ([min, max]:
    0.9375 at n = 5, 0.75 at n = 3). No values: NaNs; one value: no interval."""
    v = np.sort(np.asarray([float(x) for x in values if x is not None and not math.isnan(float(x))]))
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    mid = float(v[n // 2]) if n % 2 else _midpoint(v[n // 2 - 1], v[n // 2])
    if n == 1:
        return mid, math.nan, math.nan, math.nan
    cover = lambda r: 1 - 2 * stats.binom.cdf(r - 1, n, 0.5)  # noqa: E731
    r = 1
    while r + 1 <= n // 2 and cover(r + 1) >= confidence:
        r += 1
    return mid, float(v[r - 1]), float(v[n - r]), float(cover(r))


def _midpoint(a: float, b: float) -> float:
    return float(b) if math.isinf(b) else float((a + b) / 2)
