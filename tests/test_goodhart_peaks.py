"""Goodhart-law peaks that may not exist (issue 12): refits with b <= 0 have no peak
(d* = inf) and stay in the bootstrap, so the interval's upper end can be unbounded."""
import itertools
import math
from collections import Counter

import numpy as np
import pytest

from optbench.report.goodhart import (fit_curves, fits_markdown, peak_text, percentile_interval,
                                      seed_resamples)

D = np.r_[0.0, np.linspace(0.25, 6, 24)]


def _cells(curves, noise=0.005):
    """Best-of-n-like cells (law d (a - b d) against sqrt_kl), one per judge curve g(d)."""
    rng = np.random.default_rng(11)
    cells = []
    for s, g in enumerate(curves):
        judge = 0.2 + g(D) + rng.normal(0, noise, len(D))
        judge[0] = 0.2
        rows = [{"sqrt_kl": float(d), "judge_prob": float(j), "proxy_prob": 0.5} for d, j in zip(D, judge)]
        cells.append({"spec": {"label": "bon", "source": "best_of_n", "proxy": "p", "domain": "mnist",
                               "n_samples": 10, "settings": {}, "knob": "n", "seed": s},
                      "curve": {"rows": rows, "baseline": {}}})
    return cells


def concave(a, b):
    return lambda d: d * (a - b * d)


def rising(d):          # never turns down: the pooled fit of such seeds has b < 0
    return d * (0.05 + 0.01 * d)


def test_concave_curves_give_a_finite_interval_around_the_true_peak():
    # Seeds differ in a: peaks 3.0 to 4.0 (true peak of the mean curve: 3.5 = 0.28 / 0.08).
    cells = _cells([concave(a, 0.04) for a in (0.24, 0.26, 0.28, 0.30, 0.32)])
    (row,) = fit_curves(cells, n_boot=200)
    assert row["b"] > 0 and row["no_peak_share"] == 0 and row["boot_exact"]   # 126 resamples
    assert math.isfinite(row["peak_d_lo"]) and math.isfinite(row["peak_d_hi"])
    assert row["peak_d_lo"] < 3.5 < row["peak_d_hi"]
    assert row["peak_d"] == pytest.approx(3.5, rel=0.05)
    assert row["peak_d_hi"] - row["peak_d_lo"] < 1.5
    assert "unbounded" not in fits_markdown([row]).split("\n")[2]


def test_half_the_seeds_monotone_gives_an_unbounded_upper_end():
    # 2 of 4 seeds never turn down; a resample of only those (1/16) has no peak, more
    # than the 2.5% an upper percentile cuts off.
    cells = _cells([concave(0.28, 0.04), concave(0.28, 0.04), rising, rising])
    (row,) = fit_curves(cells)
    assert row["no_peak_share"] >= 1 / 16 - 1e-12
    assert math.isfinite(row["peak_d"]) and math.isfinite(row["peak_d_lo"])
    assert row["peak_d_hi"] == math.inf
    table = fits_markdown([row])
    assert "unbounded)" in table                          # '... [lo, unbounded)'
    assert "percentile bootstrap over seeds, refitting: 4 seeds, all 35 distinct resamples" in table
    # Random resampling instead (n_boot below the 35 distinct resamples) is named as such.
    (rand,) = fit_curves(cells, n_boot=30)
    assert not rand["boot_exact"] and "30 random resamples (of 35 distinct)" in fits_markdown([rand])


def test_one_monotone_seed_of_three_is_unbounded_exactly():
    """The case of results/gan 'best-of-n vs proxy': one seed of three alone has b < 0,
    a resample of probability 1/27 = 3.7%. 400 random resamples drew it 2% of the time
    and printed an upper bound of 137; the exact enumeration does not depend on luck."""
    cells = _cells([concave(0.28, 0.04), concave(0.26, 0.03), rising])
    (row,) = fit_curves(cells)
    assert row["boot_exact"] and row["boot_fits"] == 10
    assert row["no_peak_share"] >= 1 / 27 - 1e-12 and row["peak_d_hi"] == math.inf


def test_all_seeds_monotone_gives_an_unbounded_point_estimate():
    (row,) = fit_curves(_cells([rising] * 3), n_boot=50)
    assert row["b"] <= 0 and row["peak_d"] == math.inf and row["no_peak_share"] == pytest.approx(1)
    assert row["peak_d_lo"] == row["peak_d_hi"] == math.inf
    assert "| unbounded |" in fits_markdown([row])


def test_seed_resamples_are_the_bootstrap_distribution():
    """Every distinct multiset of 3 seeds, with the share of the 27 ordered draws that give it."""
    got = {tuple(pick): p for pick, p in seed_resamples(3, 400, np.random.default_rng(0))}
    brute = Counter(tuple(sorted(d)) for d in itertools.product(range(3), repeat=3))
    assert got == pytest.approx({k: v / 27 for k, v in brute.items()})
    assert sum(p for _, p in seed_resamples(5, 400, None)) == pytest.approx(1)    # 126 of them
    rand = list(seed_resamples(6, 400, np.random.default_rng(0)))                 # 462 > 400
    assert len(rand) == 400 and all(p == 1 / 400 for _, p in rand)


def test_percentile_interval_keeps_infinite_values():
    finite = np.arange(1.0, 101.0)
    assert percentile_interval(finite) == (3.0, 98.0)                       # order statistics
    assert percentile_interval(np.r_[finite[:98], [np.inf] * 2]) == (3.0, 98.0)  # 2%: still finite
    assert percentile_interval(np.r_[finite[:97], [np.inf] * 3])[1] == math.inf  # 3%: unbounded
    # weighted: inf carries 3.7% (1/27), as one seed of three resampled three times
    assert percentile_interval([1.0, 2.0, np.inf], [0.5, 26 / 27 - 0.5, 1 / 27]) == (1.0, math.inf)
    assert percentile_interval([1.0, 2.0, np.inf], [0.5, 0.48, 0.02]) == (1.0, 2.0)
    assert all(math.isnan(x) for x in percentile_interval([]))


def test_peak_text():
    assert peak_text(4.1, 3.2, 5.6) == "4.1 [3.2, 5.6]"
    assert peak_text(4.1, 3.2, math.inf, 0.1) == "4.1 [3.2, unbounded); no peak in 10% of resamples"
    assert peak_text(math.inf, 3.2, math.inf, 0.6) == "unbounded (> 3.2; no peak in 60% of resamples)"
    assert peak_text(math.inf, math.inf, math.inf, 1.0) == "unbounded"


def test_a_vanishing_log_law_curvature_is_an_unbounded_peak_not_an_overflow():
    from optbench.report.fits import FORMS
    peak = FORMS["rl_kl"][1]
    assert peak(1.0, 1e-6) == math.inf          # exp(1e6) would raise OverflowError
    assert peak(2.0, 1.0) == pytest.approx(math.e)
    assert peak(1.0, -0.5) == math.inf
