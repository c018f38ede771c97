"""How often do departure-level intervals cover? A measurement, not a test.

Empirical: the 40-seed digits8 suite benchmarks/departure_coverage.toml (run first,
resumable). For each curve (Adam, SGD) and each KID feature space, every seed's departure
level, refined between grid steps (optbench/refine.py) and read from the grid alone.
Then, over random 5-seed subsets, whether the interval of the 5 contains the same
statistic of the other 35:
    order-statistic   [min, max] of the 5 against the median of the 35 (the summaries'
                      departure interval; nominal coverage 1 - 2 / 2^5 = 0.9375)
    Student-t         the 95% interval of the mean of the 5 against the mean of the 35
                      (the method departure levels were printed with before)
A seed that never departs counts as beyond the highest level (+inf) for the order
statistics and is left out of the means; seeds off the data at step 0 are left out of
both (counted apart).

Simulated: departure levels drawn from lognormal laws (median and spread in the range the
suites show), reported on the log2 grid (rounded up to the next grid step) or refined
(rounded up to 1/8 of the bracket, exact below 8), 5 seeds per interval, coverage of the
law's own median (order statistics) and mean (Student-t) over 20,000 repetitions.

Writes results/coverage/departure.json (schema optbench.departure_coverage/1) and
departure.md.

    python benchmarks/departure_coverage.py [--results /tmp/cov] [--skip-run]
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "departure_coverage.toml"
OUT = ROOT / "results" / "coverage"
SUBSET, DRAWS, SIM_REPS = 5, 20_000, 20_000
SPACES = ("kid", "kid@judge_robust", "kid@judge_mlp", "kid@feature_ae")


def seed_levels(cells: list[dict], key: str, refined: bool) -> tuple[np.ndarray, int]:
    """Per-seed departure levels (+inf: never) and the count off the data at step 0."""
    from optbench.report.summary import departs_at
    out, start = [], 0
    for c in cells:
        at = departs_at(c, key, refined=refined)
        if at == c["curve"]["rows"][0][c["spec"]["knob"]]:
            start += 1
        else:
            out.append(math.inf if math.isnan(at) else at)
    return np.asarray(out, dtype=float), start


def t_interval(v: np.ndarray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return math.nan, math.nan
    if np.all(v == v[0]):
        return v[0], v[0]
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return v.mean() - half, v.mean() + half


def subset_coverage(levels: np.ndarray, rng: np.random.Generator) -> dict:
    """Coverage over random 5-subsets of the other seeds' median (order statistics) and
    mean (Student-t, finite levels only)."""
    n = len(levels)
    hit_os = hit_t = tried_t = 0
    for _ in range(DRAWS):
        pick = rng.choice(n, SUBSET, replace=False)
        mine, rest = levels[pick], np.delete(levels, pick)
        if np.min(mine) <= np.median(rest) <= np.max(mine):
            hit_os += 1
        lo, hi = t_interval(mine)
        finite = rest[np.isfinite(rest)]
        if math.isfinite(lo) and len(finite):
            tried_t += 1
            hit_t += lo <= finite.mean() <= hi
    return {"order_statistic": hit_os / DRAWS, "student_t": hit_t / tried_t if tried_t else math.nan,
            "student_t_defined": tried_t / DRAWS}


def on_grid(x: np.ndarray) -> np.ndarray:
    """The log2 grid's reading of a departure at x: the first grid step >= x."""
    return np.where(x <= 1, 1.0, 2.0 ** np.ceil(np.log2(np.maximum(x, 1))))


def refined(x: np.ndarray) -> np.ndarray:
    """The refined reading: within the grid bracket (a, b], the first of the evaluated
    steps >= x (every step when b - a <= 8, else 1/8 of the bracket)."""
    b = on_grid(x)
    a = np.where(b <= 1, 0.0, b / 2)
    step = np.maximum(1.0, (b - a) / 8)
    return np.minimum(b, a + np.ceil(np.maximum(x - a, 0) / step) * step)


def simulate(rng: np.random.Generator) -> list[dict]:
    out = []
    for median, sigma in ((3.0, 0.4), (6.0, 0.5), (12.0, 0.5), (40.0, 0.3), (40.0, 0.8)):
        for name, read in (("grid", on_grid), ("refined", refined), ("exact", lambda x: x)):
            law = read(np.exp(rng.normal(math.log(median), sigma, 400_000)))
            true_median, true_mean = float(np.median(law)), float(law.mean())
            draws = read(np.exp(rng.normal(math.log(median), sigma, (SIM_REPS, SUBSET))))
            lo, hi = draws.min(1), draws.max(1)
            os_cover = float(np.mean((lo <= true_median) & (true_median <= hi)))
            t_hits = [(lambda ab: ab[0] <= true_mean <= ab[1])(t_interval(d)) for d in draws[:5000]]
            out.append({"median": median, "sigma": sigma, "reading": name,
                        "order_statistic": os_cover, "student_t": float(np.mean(t_hits)),
                        "points": float(np.mean(lo == hi))})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=str(ROOT / "results"), help="results root the suite runs into")
    p.add_argument("--skip-run", action="store_true", help="read the suite's cells as they are")
    a = p.parse_args()
    if not a.skip_run:
        subprocess.run([sys.executable, "-m", "optbench", "run", str(SUITE), "--out", a.results], check=True)
    from optbench.report.summary import load_cells
    cells = load_cells(Path(a.results) / "departure_coverage")
    rng = np.random.default_rng(20261202)
    rows = []
    for label in ("Adam", "SGD"):
        members = sorted((c for c in cells if c["spec"]["label"] == label), key=lambda c: c["spec"]["seed"])
        for key in SPACES:
            for use_refined in (True, False):
                levels, start = seed_levels(members, key, use_refined)
                res = [r for r in (_resolution(c, key) for c in members) if math.isfinite(r)] if use_refined else []
                rows.append({"curve": label, "key": key, "levels": "refined" if use_refined else "grid",
                             "seeds": len(members), "off_at_start": start,
                             "never": int(np.sum(np.isinf(levels))),
                             "median": float(np.median(levels)) if len(levels) else math.nan,
                             "distinct_levels": int(len(np.unique(levels))),
                             "resolution_max": max(res) if res else math.nan,
                             "resolution_median": float(np.median(res)) if res else math.nan,
                             **subset_coverage(levels, rng)})
    sim = simulate(rng)
    doc = {"schema": "optbench.departure_coverage/1", "suite": "benchmarks/departure_coverage.toml",
           "subset": SUBSET, "draws": DRAWS, "simulation_reps": SIM_REPS,
           "nominal": {"order_statistic": 1 - 2 / 2 ** SUBSET, "student_t": 0.95},
           "empirical": rows, "simulated": sim}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "departure.json").write_text(json.dumps(doc, indent=1) + "\n")
    (OUT / "departure.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


def _resolution(cell: dict, key: str) -> float:
    from optbench.report.summary import departure_resolution
    return departure_resolution(cell, key)


def markdown(doc: dict) -> str:
    lines = ["# Coverage of departure-level intervals", "",
             f"Intervals from {doc['subset']} seeds; empirical: {doc['draws']:,} random subsets of the 40 seeds "
             "of `benchmarks/departure_coverage.toml` (digits8 pixel ascent), each interval asked to contain "
             "the other 35 seeds' median (order statistics: [min, max]) or mean (Student-t 95%). Nominal: "
             f"{doc['nominal']['order_statistic']:.4f} and 0.95.", "",
             "| curve | KID space | levels | seeds off at step 0 | never | median | distinct levels | "
             "resolution (max, median) | order-statistic coverage | Student-t coverage |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["empirical"]:
        res = "-" if math.isnan(r["resolution_max"]) else f"{r['resolution_max']:g}, {r['resolution_median']:g}"
        lines.append(f"| {r['curve']} | {r['key']} | {r['levels']} | {r['off_at_start']} | {r['never']} | "
                     f"{r['median']:g} | {r['distinct_levels']} | {res} | {r['order_statistic']:.3f} | "
                     f"{r['student_t']:.3f} |")
    lines += ["", f"Simulated: lognormal departure levels, {doc['simulation_reps']:,} repetitions of {doc['subset']} "
              "seeds, coverage of the law's median (order statistics) and mean (Student-t); `points`: share of "
              "intervals that are a single level.", "",
              "| law median | log-sd | reading | order-statistic | Student-t | points |", "|---|---|---|---|---|---|"]
    for r in doc["simulated"]:
        lines.append(f"| {r['median']:g} | {r['sigma']:g} | {r['reading']} | {r['order_statistic']:.3f} | "
                     f"{r['student_t']:.3f} | {r['points']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
