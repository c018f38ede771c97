"""Curve summaries: thresholds, peaks, interpolation at equal proxy score (intervals:
test_intervals.py)."""
import math

import pytest

from optbench.report.summary import at_proxy_level, curve_stats, departure_threshold


def cell(rows, baseline, null=None):
    return {"spec": {"knob": "steps"}, "curve": {"rows": rows, "baseline": baseline, "null": null or {}}}


def row(steps, proxy, judge, kid):
    return {"steps": steps, "proxy_prob": proxy, "judge_prob": judge, "kid": kid,
            "gap": proxy - judge, "fid": 0.0, "diverged_frac": 0.0}


BASE = {"kid": -0.002, "kid_std": 0.01, "fid": 1.0}
ROWS = [row(0, 0.1, 0.1, 0.0), row(1, 0.5, 0.4, 0.05), row(2, 0.9, 0.6, 0.2),
        row(4, 1.0, 0.3, 5.0)]


def test_curve_stats_reads_peak_crossing_and_gap():
    s = curve_stats(cell(ROWS, BASE))
    assert departure_threshold(cell(ROWS, BASE)["curve"]) == pytest.approx(0.1)  # legacy: 10 x max(KID, std)
    assert s["judge_peak_at"] == 2 and s["judge_peak_prob"] == 0.6
    assert s["kid_cross_at"] == 2                     # first level with KID > 0.1
    assert s["gap_at_max"] == pytest.approx(0.7)


def test_the_null_sets_the_departure_threshold_on_the_bad_side():
    null = {"kid": {"mean": 0.0, "q01": -0.01, "q99": 0.03},
            "precision": {"mean": 0.95, "q01": 0.9, "q99": 0.99}}
    rows = [dict(r, precision=p) for r, p in zip(ROWS, (0.97, 0.95, 0.89, 0.2))]
    c = cell(rows, BASE, null)
    assert departure_threshold(c["curve"], "kid") == 0.03
    assert curve_stats(c)["kid_cross_at"] == 1           # 0.05 > q99, where the legacy rule said 2
    from optbench.report.summary import departs_at
    assert departs_at(c, "precision") == 2               # low is bad: first below q01


def test_departure_must_persist_to_the_last_level():
    from optbench.report.summary import departs_at
    null = {"kid": {"mean": 0.0, "q01": -0.01, "q99": 0.03}}
    # off the data at level 0 (an unconditional start), back on at 1 and 2, off from 4
    starts_off = [row(0, 0.1, 0.1, 0.05), row(1, 0.9, 0.8, 0.0), row(2, 0.95, 0.8, 0.02),
                  row(4, 0.99, 0.5, 0.3), row(8, 1.0, 0.4, 2.0)]
    assert departs_at(cell(starts_off, BASE, null)) == 4
    # a one-level blip beyond q99 that does not last is no departure
    blip = [row(0, 0.1, 0.1, 0.0), row(1, 0.5, 0.4, 0.04), row(2, 0.9, 0.6, 0.01)]
    assert math.isnan(departs_at(cell(blip, BASE, null)))
    # levels where the metric is undefined (NaN) neither break nor make a departure
    tail_nan = [row(0, 0.1, 0.1, 0.0), row(1, 0.5, 0.4, 0.05), row(2, 0.9, 0.6, math.nan)]
    assert departs_at(cell(tail_nan, BASE, null)) == 1


def test_kid_never_crossing_is_nan():
    rows = [row(0, 0.1, 0.1, 0.0), row(1, 0.2, 0.1, 0.01)]
    assert math.isnan(curve_stats(cell(rows, BASE))["kid_cross_at"])


def test_equal_proxy_interpolates_between_levels():
    assert at_proxy_level(ROWS, "kid", 0.7) == pytest.approx(0.05 + 0.5 * 0.15)
    assert at_proxy_level(ROWS, "judge_prob", 0.9) == pytest.approx(0.6)
    assert math.isnan(at_proxy_level(ROWS, "kid", 0.05))   # already there at the first level
    assert math.isnan(at_proxy_level(ROWS[:2], "kid", 0.9))


def test_a_curve_that_starts_above_the_threshold_says_so():
    from optbench.report.summary import equal_proxy_markdown, equal_proxy_table
    spec = {"knob": "scale", "label": "starts guided", "source": "guidance", "proxy": "proxy_cnn",
            "domain": "mnist", "n_samples": 8, "settings": {}}
    rows = [{"scale": w, "proxy_prob": p, "judge_prob": 0.9, "kid": k, "c2st": 0.6, "precision": 0.9}
            for w, p, k in [(3, 0.95, 0.0), (8, 0.995, 0.05)]]
    cells = [{"spec": spec, "curve": {"rows": rows}}] * 2
    (table,) = equal_proxy_table(cells)
    assert math.isnan(table["kid@0.5"][0]) and math.isnan(table["kid@0.9"][0])
    assert table["kid@0.99"][0] == pytest.approx(0.05 * (0.99 - 0.95) / (0.995 - 0.95))
    line = equal_proxy_markdown([table]).splitlines()[2]
    assert line.count("before the first level") == 8 and "not reached" not in line


def test_departure_table_counts_the_seeds_that_depart_in_each_space():
    from optbench.report.summary import summarize, summary_markdown
    null = {"kid": {"mean": 0.0, "q01": -0.01, "q99": 0.03}, "kid@other": {"mean": 0.0, "q01": -0.1, "q99": 0.3}}

    def seed_cell(other_at_end):
        rows = [dict(row(s, p, 0.5, k), **{"kid@other": o}) for s, p, k, o in
                [(0, 0.1, 0.0, 0.0), (1, 0.5, 0.05, 0.5), (2, 0.9, 0.2, other_at_end)]]
        c = cell(rows, BASE, null)
        c["spec"].update(label="c", source="pixel_ascent", proxy="p", domain="d", n_samples=8, settings={})
        return c
    md = summary_markdown(summarize([seed_cell(0.1), seed_cell(0.1), seed_cell(0.9)]))
    line = [ln for ln in md.splitlines() if ln.startswith("| c | 1 |")]
    assert line == ["| c | 1 | 1 (1/3 seeds) |"]   # kid departs at 1 in every seed; kid@other in one
