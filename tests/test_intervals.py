"""Intervals of a mean over seeds (issue 12): the Student-t interval against its closed
form, its coverage by simulation, and how summaries print and name it."""
import math

import numpy as np
import pytest
from scipy import stats

from optbench.report.intervals import INTERVAL_METHOD, mean_ci, seeds_text
from optbench.report.summary import (EQUAL_PROXY_NOTE, _fmt, equal_proxy_markdown, equal_proxy_table,
                                     summarize, summary_markdown)


def closed_form(v):
    """mean +- t_{0.975, n-1} s / sqrt(n), assembled here with numpy."""
    v = np.asarray(v, dtype=float)
    n = len(v)
    half = stats.t.ppf(0.975, n - 1) * np.sqrt(((v - v.mean()) ** 2).sum() / (n - 1)) / np.sqrt(n)
    return v.mean(), v.mean() - half, v.mean() + half


@pytest.mark.parametrize("v", [[0.2, 0.35, 0.31, 0.5, 0.28], [30.5, 27.5, 32.6], [-1.0, 4.0],
                               [1e-3, 2e-3, 4e-3, 8e-3]])
def test_bounds_match_the_closed_form(v):
    assert mean_ci(v) == pytest.approx(closed_form(v), rel=1e-12)


def test_known_value_by_hand():
    # [1, 2, 3]: mean 2, s = 1, t_{0.975, 2} = 4.302653 -> half-width 4.302653 / sqrt(3).
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert mean - lo == pytest.approx(hi - mean)


def test_degenerate_inputs():
    assert mean_ci([0.4, 0.4, 0.4]) == (0.4, 0.4, 0.4)     # all equal: a point, exactly
    m, lo, hi = mean_ci([0.7])                              # one seed: no interval
    assert m == 0.7 and math.isnan(lo) and math.isnan(hi)
    assert mean_ci([float("nan"), None, 1.0, 3.0]) == pytest.approx(closed_form([1.0, 3.0]))
    assert all(math.isnan(x) for x in mean_ci([None, float("nan")]))
    assert all(math.isnan(x) for x in mean_ci([]))


def test_interval_is_strictly_wider_than_min_max():
    """The old percentile bootstrap of 3 seeds returned [min, max] (coverage ~75%)."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        v = rng.normal(size=3)
        _, lo, hi = mean_ci(v)
        assert lo < v.min() and hi > v.max()


@pytest.mark.parametrize("n", [3, 5])
def test_coverage_of_normal_data_is_95_percent(n):
    rng = np.random.default_rng(n)
    trials, mu = 4000, 0.3
    covered = 0
    for _ in range(trials):
        _, lo, hi = mean_ci(rng.normal(mu, 0.05, n))
        covered += lo <= mu <= hi
    assert covered / trials == pytest.approx(0.95, abs=0.015)   # 4.4 binomial SEs


def test_other_confidence_levels():
    v = [1.0, 2.0, 4.0, 7.0]
    m, lo, hi = mean_ci(v, confidence=0.8)
    half = stats.t.ppf(0.9, 3) * np.std(v, ddof=1) / 2
    assert (lo, hi) == pytest.approx((m - half, m + half))
    with pytest.raises(ValueError, match="confidence"):
        mean_ci(v, confidence=95)


def test_seeds_text():
    assert seeds_text(5) == "(n = 5 seeds, Student-t 95%)"
    assert seeds_text([3, 3, 3]) == "(n = 3 seeds, Student-t 95%)"
    assert seeds_text([2, 3]) == "(n = 2 to 3 seeds, Student-t 95%)"
    assert seeds_text(1) == "(n = 1 seed, Student-t 95%)"
    assert "Student-t" in INTERVAL_METHOD and "95%" in INTERVAL_METHOD


def test_fmt_prints_an_interval_only_with_finite_bounds():
    nan, inf = math.nan, math.inf
    assert _fmt(0.5, 0.4, 0.6) == "0.5 [0.4, 0.6]"
    assert _fmt(0.5, nan, nan) == "0.5"          # one seed
    assert _fmt(0.5, 0.5, 0.5) == "0.5"          # all seeds equal
    assert _fmt(0.5, 0.4, inf) == "0.5 [0.4, inf]"
    assert _fmt(0.5, -inf, 0.6) == "0.5 [-inf, 0.6]"
    assert _fmt(nan, nan, nan, missing="never") == "never"


def _cell(judge_at_max):
    """A three-level curve of one seed, ending at judge probability `judge_at_max`."""
    rows = [{"steps": s, "proxy_prob": p, "judge_prob": j, "kid": k, "gap": p - j, "fid": 1.0,
             "diverged_frac": 0.0}
            for s, p, j, k in [(0, 0.1, 0.1, 0.0), (1, 0.9, 0.5, 0.05), (2, 1.0, judge_at_max, 5.0)]]
    return {"spec": {"knob": "steps", "label": "curve", "source": "pixel_ascent",
                     "proxy": "proxy_cnn", "domain": "mnist", "n_samples": 8, "settings": {}},
            "curve": {"rows": rows, "baseline": {"kid": 0.0, "kid_std": 0.01, "fid": 1.0}},
            "meta": {"wall_seconds": 1.0}}


def test_summary_tables_name_the_method_and_the_seeds():
    judges = [0.2, 0.25, 0.18, 0.3, 0.22]
    cells = [_cell(j) for j in judges]
    rows = summarize(cells)
    mean, lo, hi = closed_form(judges)
    assert (rows[0]["judge_prob_at_max"], rows[0]["judge_prob_at_max_lo"],
            rows[0]["judge_prob_at_max_hi"]) == pytest.approx((mean, lo, hi))
    md = summary_markdown(rows)
    assert "(n = 5 seeds, Student-t 95%)" in md and "bootstrap" not in md
    eq = equal_proxy_markdown(equal_proxy_table(cells))
    assert "(n = 5 seeds, Student-t 95%)" in eq and "bootstrap" not in eq + EQUAL_PROXY_NOTE
    assert INTERVAL_METHOD in EQUAL_PROXY_NOTE
