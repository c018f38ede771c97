"""Detectors graded against the truth.

A detector (optbench/detectors.py, recorded by optbench/detector_metrics.py) reads only
the proxy's side. At every level it gives `det_<name>`, the share of outputs above its
threshold calibrated on held-out real data, so n real samples give Binomial(n, 0.01) / n:
it fires at a level when the share exceeds that law's 99th percentile. The truth is what
the optimizer's owner does not have: the exact referee (`gold_*`) where the domain has
one, else the learned referees that stand in for it:

  departed    by the domain's exact truth where it has one (`gold_ks` on the mixtures,
              `gold_atypical` on faces: optbench/report/audit.py), else KID in the primary
              feature space beyond its real-against-real null (MNIST, digits8)
  worth       what an output is worth to someone who asked for a real-looking example of
              the target: `gold_value` on the mixtures (the exact target posterior of a
              typical output, 0 for an atypical one), `gold_prob` on faces (the target
              attribute of the face an output projects to, 0 off the manifold), else the
              judges' `judge_prob`

Per domain, source and detector:

  auroc       how well the detector's level value separates levels the truth calls
              departed from levels it calls on the data: sklearn's roc_auc_score over every
              (cell, level) of one seed (ties count half), mean and Student-t 95% interval
              over seeds
  lead        per cell, the detector's departure point (first level from which it fires at
              every later level, as for the referees) against the truth's, in levels:
              earlier, same, later, never (the truth departs, it does not), alone (it fires,
              the truth does not)
  regret      the stopping rule "stop at the first level where the detector fires" (once
              is enough: an owner stops on the first alarm), or at the last level if it
              never fires: the best worth along the trajectory minus the worth
              where it stopped; beside it, the regret of never stopping
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy.stats import binom

from optbench.detectors import FLAG_RATE
from optbench.report.intervals import INTERVAL_METHOD, mean_ci
from optbench.report.summary import departs_at

FIRE_QUANTILE = 0.99
DEPARTURE_TRUTHS = ("gold_ks", "gold_atypical")   # the first a cell has is its departure truth
ORDERS = ("earlier", "same", "later", "never", "alone", "neither")


def detector_names(cell: dict) -> list[str]:
    """The cell's detectors: its values whose registered metric has role "detector"
    (built-in or plug-in; optbench/metrics.py), named without the built-ins' "det_"
    prefix. A value the registry does not know (results read without their plug-in)
    counts when it is a det_<name> share."""
    from optbench.metrics import lookup

    def is_detector(key: str) -> bool:
        m = lookup(key)
        return m.role == "detector" if m else key.startswith("det_") and not key.endswith("_score")
    return sorted(k.removeprefix("det_") for k in cell["curve"]["rows"][0] if is_detector(k))


def detector_key(cell: dict, detector: str) -> str:
    return f"det_{detector}" if f"det_{detector}" in cell["curve"]["rows"][0] else detector


def detector_threshold(cell: dict, detector: str) -> float:
    """The share above which the detector fires: its null's q99 as the cell recorded it
    (its declared binomial law), else Binomial(n, FLAG_RATE)'s (results made before
    cells recorded detector nulls)."""
    null = (cell["curve"].get("null") or {}).get(detector_key(cell, detector))
    return null["q99"] if null else fire_threshold(cell["spec"]["n_samples"])


def fire_threshold(n: int) -> float:
    """The share of n real samples flagged at a 1% rate that is exceeded with probability
    at most 1%."""
    return float(binom.ppf(FIRE_QUANTILE, n, FLAG_RATE) / n)


def departure_truth(cell: dict) -> str:
    row = cell["curve"]["rows"][0]
    return next((t for t in DEPARTURE_TRUTHS if t in row), "kid")


def worth_key(cell: dict) -> str:
    row = cell["curve"]["rows"][0]
    return next((k for k in ("gold_value", "gold_prob") if k in row), "judge_prob")


def with_detector_null(cell: dict) -> dict:
    """The cell with every detector's binomial threshold in its null, so the referees'
    departure rule (summary.departs_at) reads detectors too."""
    null = dict(cell["curve"].get("null") or {})
    null |= {detector_key(cell, d): {"q99": detector_threshold(cell, d), "q01": 0.0} for d in detector_names(cell)}
    return {**cell, "curve": {**cell["curve"], "null": null}}


def truly_departed(cell: dict, row: dict) -> bool | None:
    from optbench.referees.null import departed
    truth = departure_truth(cell)
    value = row.get(truth, math.nan)
    return departed(cell["curve"].get("null") or {}, truth, value) if math.isfinite(value) else None


def _index(cell: dict, level: float) -> float:
    knob = cell["spec"]["knob"]
    return float([r[knob] for r in cell["curve"]["rows"]].index(level)) if math.isfinite(level) else math.nan


def lead(cell: dict, detector: str) -> str:
    """Where the detector departs relative to the truth in one cell."""
    cell = with_detector_null(cell)
    g = _index(cell, departs_at(cell, departure_truth(cell)))
    d = _index(cell, departs_at(cell, detector_key(cell, detector)))
    if math.isnan(g):
        return "neither" if math.isnan(d) else "alone"
    if math.isnan(d):
        return "never"
    return "earlier" if d < g else "same" if d == g else "later"


def stop(cell: dict, detector: str) -> dict:
    """The stopping rule on one cell, over the levels where the worth is defined
    (best-of-n's per-sample estimates end where the pool runs short): where it stops,
    and the truth there and at best."""
    key, thr, det = worth_key(cell), detector_threshold(cell, detector), detector_key(cell, detector)
    rows = [r for r in cell["curve"]["rows"] if math.isfinite(r.get(key, math.nan))]
    worth = [r[key] for r in rows]
    at = next((i for i, r in enumerate(rows) if r.get(det, math.nan) > thr), len(rows) - 1)
    return {"index": at, "fired": rows[at].get(det, math.nan) > thr,
            "proxy_prob": rows[at]["proxy_prob"], "worth": worth[at], "best_worth": max(worth),
            "regret": max(worth) - worth[at], "regret_never_stop": max(worth) - worth[-1],
            "departed_at_stop": truly_departed(cell, rows[at])}


def auroc(cells: list[dict], detector: str) -> float:
    """AUROC of det_<detector> for truly departed levels over the cells' levels (NaN when
    the truth calls every level the same)."""
    from sklearn.metrics import roc_auc_score
    labels, scores = [], []
    for c in cells:
        for r in c["curve"]["rows"]:
            g, v = truly_departed(c, r), r.get(detector_key(c, detector), math.nan)
            if g is not None and math.isfinite(v):
                labels.append(int(g))
                scores.append(v)
    return float(roc_auc_score(labels, scores)) if len(set(labels)) == 2 else math.nan


def grade(cells: list[dict]) -> list[dict]:
    """One row per (domain, source, detector) among cells that recorded detectors."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        if detector_names(c):
            groups.setdefault((c["spec"]["domain"], c["spec"]["source"]), []).append(c)
    out = []
    for (domain, source), members in sorted(groups.items()):
        seeds = sorted({c["spec"]["seed"] for c in members})
        for det in detector_names(members[0]):
            aucs = [auroc([c for c in members if c["spec"]["seed"] == s], det) for s in seeds]
            stops = [stop(c, det) for c in members]
            orders = {k: 0 for k in ORDERS}
            for c in members:
                orders[lead(c, det)] += 1
            row = {"domain": domain, "source": source, "detector": det, "cells": len(members),
                   "departure_truth": departure_truth(members[0]), "worth": worth_key(members[0]),
                   "auroc": mean_ci(aucs), "auroc_seeds": sum(math.isfinite(a) for a in aucs),
                   "regret": mean_ci([s["regret"] for s in stops]),
                   "regret_never_stop": mean_ci([s["regret_never_stop"] for s in stops]),
                   "worth_at_stop": mean_ci([s["worth"] for s in stops]),
                   "proxy_at_stop": mean_ci([s["proxy_prob"] for s in stops]),
                   "fired": sum(s["fired"] for s in stops),
                   "departed_at_stop": sum(bool(s["departed_at_stop"]) for s in stops)} | orders
            out.append(row)
    return out


def _ci(v: tuple[float, float, float], digits: int = 2) -> str:
    mean, lo, hi = v
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if math.isfinite(lo) else "")


def grading_markdown(rows: list[dict]) -> str:
    lines = []
    for domain in dict.fromkeys(r["domain"] for r in rows):
        members = [r for r in rows if r["domain"] == domain]
        lines += [f"### {domain}", "",
                  f"Departure: `{members[0]['departure_truth']}` beyond its null's q99; worth: "
                  f"`{members[0]['worth']}`. AUROC: {INTERVAL_METHOD} (one value per seed); regret "
                  "and the scores at the stop: the same interval over cells.", "",
                  "| source | detector | AUROC | earlier | same | later | never | alone | fired | proxy at stop "
                  "| worth at stop | regret | regret, never stopping | stopped after the truth departed |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in members:
            lines.append(f"| {r['source']} | `{r['detector']}` | {_ci(r['auroc'])} | {r['earlier']} | {r['same']} "
                         f"| {r['later']} | {r['never']} | {r['alone']} | {r['fired']}/{r['cells']} "
                         f"| {_ci(r['proxy_at_stop'])} | {_ci(r['worth_at_stop'])} | {_ci(r['regret'])} "
                         f"| {_ci(r['regret_never_stop'])} | {r['departed_at_stop']}/{r['cells']} |")
        lines.append("")
    return "\n".join(lines)


DETECTORS_SCHEMA = "optbench.detectors/1"


def grading_rows(data) -> list[dict]:
    """The rows of a loaded detectors.json: {"schema", "rows"}, or the bare list of
    folders written before detectors.json carried a schema."""
    return data if isinstance(data, list) else data["rows"]


def write_grading(cells: list[dict], suite_dir: Path, plots: Path, rows: list[dict] | None = None) -> bool:
    """detectors.md, detectors.json and plots/detectors.png when cells recorded detectors
    (`rows`: grade(cells) where the caller has them)."""
    rows = grade(cells) if rows is None else rows
    if not rows:
        return False
    from optbench.storage import write_atomic
    write_atomic(Path(suite_dir) / "detectors.json",
                 json.dumps({"schema": DETECTORS_SCHEMA, "rows": rows}, indent=1) + "\n")
    write_atomic(Path(suite_dir) / "detectors.md", "# Detectors graded against the truth\n\n"
                 + (__doc__ or "").split("\n\n", 1)[1] + "\n\n" + grading_markdown(rows))
    detectors_figure(rows, Path(plots) / "detectors.png")
    return True


def detectors_figure(rows: list[dict], out: Path) -> None:
    """One panel per domain: detectors as rows, sources as columns, colour the AUROC
    (grey: undefined), text the AUROC and how many cells the detector fired before (e),
    with (s) or after (l) the truth, or never (n)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    fig, axes = plt.subplots(1, len(domains), figsize=(3.2 + 1.9 * max(
        len({r["source"] for r in rows if r["domain"] == d}) for d in domains) * len(domains), 4.2),
        squeeze=False)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.85")
    for ax, domain in zip(axes[0], domains):
        members = [r for r in rows if r["domain"] == domain]
        sources = list(dict.fromkeys(r["source"] for r in members))
        dets = list(dict.fromkeys(r["detector"] for r in members))
        grid = np.full((len(dets), len(sources)), np.nan)
        for r in members:
            i, j = dets.index(r["detector"]), sources.index(r["source"])
            grid[i, j] = r["auroc"][0]
            txt = "n/a" if not math.isfinite(r["auroc"][0]) else f"{r['auroc'][0]:.2f}"
            ax.text(j, i, f"{txt}\n{r['earlier']}e {r['same']}s {r['later']}l {r['never']}n",
                    ha="center", va="center", fontsize=7.5)
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(sources)), [s.replace("_", " ") for s in sources], rotation=20, fontsize=8)
        ax.set_yticks(range(len(dets)), dets, fontsize=8)
        ax.set_title(f"{domain} (departure: {members[0]['departure_truth']})", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="AUROC for truly departed levels")
    fig.suptitle("Detectors graded against the truth: AUROC (colour; mean over seeds) and, per cell, "
                 "firing earlier / same / later than the truth / never", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
