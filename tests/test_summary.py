"""Curve summaries: thresholds, peaks, interpolation at equal proxy score (intervals:
test_intervals.py)."""
import math

import pytest

from optbench.report.summary import at_proxy_level, curve_stats, kid_threshold


def cell(rows, baseline):
    return {"spec": {"knob": "steps"}, "curve": {"rows": rows, "baseline": baseline}}


def row(steps, proxy, judge, kid):
    return {"steps": steps, "proxy_prob": proxy, "judge_prob": judge, "kid": kid,
            "gap": proxy - judge, "fid": 0.0, "diverged_frac": 0.0}


BASE = {"kid": -0.002, "kid_std": 0.01, "fid": 1.0}
ROWS = [row(0, 0.1, 0.1, 0.0), row(1, 0.5, 0.4, 0.05), row(2, 0.9, 0.6, 0.2),
        row(4, 1.0, 0.3, 5.0)]


def test_curve_stats_reads_peak_crossing_and_gap():
    s = curve_stats(cell(ROWS, BASE))
    assert kid_threshold(BASE) == pytest.approx(0.1)  # 10 x max(KID, its std)
    assert s["judge_peak_at"] == 2 and s["judge_peak_prob"] == 0.6
    assert s["kid_cross_at"] == 2                     # first level with KID > 0.1
    assert s["gap_at_max"] == pytest.approx(0.7)


def test_kid_never_crossing_is_nan():
    rows = [row(0, 0.1, 0.1, 0.0), row(1, 0.2, 0.1, 0.01)]
    assert math.isnan(curve_stats(cell(rows, BASE))["kid_cross_at"])


def test_equal_proxy_interpolates_between_levels():
    assert at_proxy_level(ROWS, "kid", 0.7) == pytest.approx(0.05 + 0.5 * 0.15)
    assert at_proxy_level(ROWS, "judge_prob", 0.9) == pytest.approx(0.6)
    assert at_proxy_level(ROWS, "kid", 0.05) == 0.0   # reached at the first level
    assert math.isnan(at_proxy_level(ROWS[:2], "kid", 0.9))
