"""Curve summaries: thresholds, peaks, interpolation at equal proxy score (intervals:
test_intervals.py)."""
import math

import pytest

from optbench.report.summary import at_proxy_level, curve_stats, departure_threshold


def cell(rows, baseline, null=None):
    """A cell; without `null`, one made before nulls were stored (no "null" key)."""
    curve = {"rows": rows, "baseline": baseline} | ({} if null is None else {"null": null})
    return {"spec": {"knob": "steps"}, "curve": curve}


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
    # kid departs at 1 in every seed; kid@other in one, so its median seed never departs:
    # the median and [min, max] over seeds, "never" standing for beyond the highest level
    assert line == ["| c | 1 | never [1, never] (1/3 seeds) |"]


def _counted(rows, per_step=3.0):
    """Rows with proxy query counts: `per_step` forward passes per knob unit."""
    return [dict(r, proxy_forward=per_step * r["steps"], proxy_backward=r["steps"]) for r in rows]


def test_queries_to_reach_interpolates_the_count_where_the_curve_crosses():
    from optbench.report.summary import queries_to_reach
    c = cell(_counted(ROWS), BASE)
    # proxy 0.7 is crossed halfway between steps 1 and 2: 1.5 steps x 3 passes
    assert queries_to_reach(c, 0.7) == pytest.approx(4.5)
    assert math.isnan(queries_to_reach(cell(ROWS, BASE), 0.7))    # results without counts


def test_queries_to_reach_reads_a_stopped_point_at_its_mean_step():
    from optbench.report.summary import queries_to_reach
    c = cell(_counted(ROWS), BASE)
    c["curve"]["equal_proxy"] = [{"threshold": 0.9, "reached_frac": 1.0, "steps_mean": 3.0},
                                 {"threshold": 0.99, "reached_frac": 0.5, "steps_mean": 4.0}]
    assert queries_to_reach(c, 0.9) == pytest.approx(9.0)      # steps 3 lies between levels 2 and 4
    assert math.isnan(queries_to_reach(c, 0.99))               # half the samples: not counted
    assert math.isnan(queries_to_reach(c, 0.5))                # no stopped point recorded there


def test_summary_reports_queries_at_max_and_when_kid_leaves():
    from optbench.report.summary import summarize, summary_markdown
    null = {"kid": {"mean": 0.0, "q01": -0.01, "q99": 0.1}}

    def seed_cell(per_step):
        c = cell(_counted(ROWS, per_step), BASE, null)
        c["spec"].update(label="c", source="pixel_ascent", proxy="p", domain="d", n_samples=8, settings={})
        return c
    (r,) = summarize([seed_cell(2.0), seed_cell(4.0)])
    assert r["proxy_forward_at_max"] == pytest.approx(12.0)         # 4 steps x mean(2, 4)
    assert r["kid_cross_queries"] == pytest.approx(6.0)              # KID leaves at step 2
    md = summary_markdown([r])
    assert "| c | 12 | 4 | 6 [" in md


def test_equal_compute_table_and_figure(tmp_path):
    from optbench.report.plots import equal_compute_figure
    from optbench.report.summary import equal_compute_markdown, equal_proxy_table
    spec = {"knob": "steps", "label": "c", "source": "pixel_ascent", "proxy": "p", "domain": "d",
            "n_samples": 8, "settings": {}}
    cells = [{"spec": spec, "curve": {"rows": _counted(ROWS, k)}} for k in (2.0, 4.0)]
    (table,) = equal_proxy_table(cells)
    assert table["queries@0.9"][0] == pytest.approx(6.0)        # reached at step 2: 2 x mean(2, 4)
    assert "| c | 3 [" in equal_compute_markdown([table])       # proxy 0.5 at step 1
    assert equal_compute_figure(cells, tmp_path / "c.png") and (tmp_path / "c.png").stat().st_size > 1000
    free = [{"spec": dict(spec, label="cfg", source="guidance"), "curve": {"rows": _counted(ROWS, 0.0)}}]
    assert not equal_compute_figure(free, tmp_path / "none.png")   # no curve spends queries
    # A curve that spends queries but never reaches a level keeps its row (a failed
    # search is not hidden); one that spends none is left out.
    weak = [{"spec": dict(spec, label="weak"), "curve": {"rows": _counted([dict(r, proxy_prob=0.2) for r in ROWS])}}]
    md = equal_compute_markdown(equal_proxy_table(weak + free))
    assert "| weak | n/a | n/a | n/a |" in md and "cfg" not in md
