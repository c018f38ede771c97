"""Detectors graded against the truth, per sample, beside trivial scores.

A detector (optbench/detectors.py, recorded by optbench/detector_metrics.py) reads only
the proxy's side: a per-sample score, flagged above a threshold calibrated on real data
that no start, baseline or null draws from. The truth is what the optimizer's owner does
not have: the exact referee where the domain has one (`gold_atypical` per sample and
`gold_ks` per level on the mixtures, `gold_atypical` on faces: off the manifold), else
KID in the primary feature space beyond its null (MNIST).

A trivial score knows nothing of the data: the pressure level, the proxy's own logit and
probability of the target, the L2 distance from the start. Each is read in the direction
that serves it best (reversed when its mean AUROC over seeds is below 0.5), so a
detector's margin over it is never flattered by a baseline pointing the wrong way. Any score that rises with
pressure separates early levels from late ones, so a detector is graded where those
cannot help, per sample (cells that keep per-sample values: a suite's `per_sample = true`),
with the trivial scores graded the same way beside it:

  within level   at one level of one cell, the AUROC of the score for separating outputs
                 the truth calls atypical from typical ones (levels with at least
                 MIN_CLASS of each); mean over levels and cells per seed, then the
                 Student-t interval over seeds. The pressure level is constant here (0.5).
  pooled         the same over every (level, output) of a cell: the pressure level and
                 the distance from the start can score here
  vs real        at the truth's departure level of each cell (its first level from which
                 the truth stays beyond its null), the AUROC for separating the outputs
                 from the cell's n real test examples (never used to calibrate); the
                 level and the distance are undefined on real data
  margin         a detector's AUROC minus the best trivial score's (the best by its mean
                 over seeds), paired by seed
  equal proxy    per domain, outputs of every source pooled within bins of the proxy's
                 own probability, so sources and levels mix at equal proxy score

Per cell, from the level values as before: `lead` (where the detector's flagged share
first stays above its null's q99 against the truth's departure: earlier, same, later,
never, alone) and the stopping rule "stop at the first level where the detector fires",
with its regret against the best worth on the trajectory, beside stopping where the
proxy's mean probability first reaches 0.5, 0.9 or 0.99 and never stopping.

The out-of-sample false-positive rate: the flagged share of the cells' real test
examples (each proxy replicate and seed once), with its Clopper-Pearson 95% interval.
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
    g = _index(cell, departs_at(cell, departure_truth(cell), refined=False))   # grid levels: the detectors'
    d = _index(cell, departs_at(cell, detector_key(cell, detector), refined=False))
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


BASELINES = ("pressure", "proxy_logit", "proxy_prob", "l2")   # trivial scores
PER_SAMPLE_TRUTH = "gold_atypical"
MIN_CLASS = 5                        # outputs of each class a within-level AUROC needs
PROXY_BINS = ((0.5, 0.9), (0.9, 0.99), (0.99, 1.0))
PROXY_STOPS = (0.5, 0.9, 0.99)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """sklearn's roc_auc_score over the finite scores (ties count half); NaN with fewer
    than MIN_CLASS of either class."""
    from sklearn.metrics import roc_auc_score
    ok = np.isfinite(scores) & np.isfinite(labels)
    y, v = labels[ok].astype(int), scores[ok]
    if min(int(y.sum()), int(len(y) - y.sum())) < MIN_CLASS:
        return math.nan
    return float(roc_auc_score(y, v))


def sample_scores(cell: dict, samples: dict, name: str) -> np.ndarray | None:
    """(levels, n) per-sample values of a detector's score or a trivial score; None where
    the cell has none (the pressure level: the knob's value for every output)."""
    if name == "pressure":
        knob = cell["spec"]["knob"]
        levels = np.asarray([r[knob] for r in cell["curve"]["rows"]], dtype=float)
        n = next(iter(samples.values())).shape[-1]
        return np.repeat(levels[:, None], n, axis=1)
    key = name if name in BASELINES else f"det_{name}_score"
    return samples.get(key)


def real_scores(samples: dict, name: str) -> np.ndarray | None:
    from optbench.record import REAL_PREFIX
    if name in ("pressure", "l2"):   # undefined on real data (a real example is its own start)
        return None
    return samples.get(REAL_PREFIX + (name if name in BASELINES else f"det_{name}_score"))


def truth_level(cell: dict) -> int | None:
    """Index of the row where the cell's truth departs (gold_ks, gold_atypical or KID)."""
    at = departs_at(cell, departure_truth(cell), refined=False)
    if not math.isfinite(at):
        return None
    knob = cell["spec"]["knob"]
    return [r[knob] for r in cell["curve"]["rows"]].index(at)


def cell_aurocs(cell: dict, samples: dict, name: str) -> dict:
    """One cell's per-sample AUROCs of one score: within level (mean over the levels that
    have both classes), pooled over levels, and against the real examples at the truth's
    departure level."""
    out = {"within": math.nan, "pooled": math.nan, "real": math.nan}
    v = sample_scores(cell, samples, name)
    if v is None:
        return out
    truth = samples.get(PER_SAMPLE_TRUTH)
    if truth is not None:
        per_level = [_auc(truth[i], v[i]) for i in range(len(v))]
        per_level = [a for a in per_level if math.isfinite(a)]
        out["within"] = float(np.mean(per_level)) if per_level else math.nan
        out["pooled"] = _auc(truth.ravel(), v.ravel())
    real, at = real_scores(samples, name), truth_level(cell)
    if real is not None and at is not None:
        out["real"] = _auc(np.r_[np.ones(v.shape[1]), np.zeros(len(real))], np.r_[v[at], real])
    return out


def score_names(cell: dict) -> list[tuple[str, str]]:
    """(name, kind) of every score graded on a cell: its detectors, then the trivial ones."""
    return [(d, "detector") for d in detector_names(cell)] + [(b, "baseline") for b in BASELINES]


def _samples(cell: dict, memo: dict) -> dict | None:
    from optbench.record import read_samples
    folder = cell.get("folder")
    if folder is None:
        return None
    if folder not in memo:
        memo[folder] = read_samples(folder)
    return memo[folder]


def _seed_means(values: list[tuple[int, float]]) -> list[float]:
    """One value per seed: the mean of its cells' finite values (NaN when none)."""
    by: dict[int, list[float]] = {}
    for seed, v in values:
        by.setdefault(seed, []).append(v)
    return [float(np.mean(f)) if (f := [x for x in vs if math.isfinite(x)]) else math.nan for vs in by.values()]


def proxy_stop(cell: dict, threshold: float) -> dict:
    """Stopping where the proxy's mean probability first reaches `threshold` (or at the
    last level): its regret against the best worth, and whether the truth had departed."""
    key = worth_key(cell)
    rows = [r for r in cell["curve"]["rows"] if math.isfinite(r.get(key, math.nan))]
    at = next((i for i, r in enumerate(rows) if r["proxy_prob"] >= threshold), len(rows) - 1)
    worth = [r[key] for r in rows]
    return {"regret": max(worth) - worth[at], "departed_at_stop": truly_departed(cell, rows[at])}


def grade(cells: list[dict]) -> list[dict]:
    """One row per (domain, source, score), detectors and trivial scores, among cells that
    recorded detectors: per-sample AUROCs over seeds (cells that kept per-sample values),
    a detector's margin over the best trivial score, and the level-based lead and stop."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        if detector_names(c):
            groups.setdefault((c["spec"]["domain"], c["spec"]["source"]), []).append(c)
    memo: dict = {}
    out = []
    for (domain, source), members in sorted(groups.items()):
        per_cell = {}
        for c in members:
            samples = _samples(c, memo)
            per_cell[id(c)] = {n: cell_aurocs(c, samples, n) for n, _ in score_names(c)} if samples else {}
        seeds = sorted({c["spec"]["seed"] for c in members})
        rows = []
        for name, kind in score_names(members[0]):
            row = {"domain": domain, "source": source, "score": name, "kind": kind, "cells": len(members),
                   "seeds": len(seeds), "departure_truth": departure_truth(members[0]),
                   "worth": worth_key(members[0]), "per_sample_cells": sum(bool(v) for v in per_cell.values())}
            for part in ("within", "pooled", "real"):
                vals = _seed_means([(c["spec"]["seed"], per_cell[id(c)].get(name, {}).get(part, math.nan))
                                    for c in members])
                finite = [v for v in vals if math.isfinite(v)]
                if kind == "baseline" and finite and np.mean(finite) < 0.5:
                    vals = [1 - v for v in vals]   # a trivial score read the way that serves it best
                row[f"auroc_{part}"], row[f"_seeds_{part}"] = mean_ci(vals, bounds=(0.0, 1.0)), vals
            if kind == "detector":
                stops = [stop(c, name) for c in members]
                orders = {k: 0 for k in ORDERS}
                for c in members:
                    orders[lead(c, name)] += 1
                row |= {"regret": mean_ci([s["regret"] for s in stops]),
                        "regret_never_stop": mean_ci([s["regret_never_stop"] for s in stops]),
                        "worth_at_stop": mean_ci([s["worth"] for s in stops]),
                        "proxy_at_stop": mean_ci([s["proxy_prob"] for s in stops]),
                        "fired": sum(s["fired"] for s in stops),
                        "departed_at_stop": sum(bool(s["departed_at_stop"]) for s in stops)} | orders
            else:
                row["proxy_stops"] = {str(t): {"regret": mean_ci([proxy_stop(c, t)["regret"] for c in members]),
                                               "departed_at_stop": sum(bool(proxy_stop(c, t)["departed_at_stop"])
                                                                       for c in members)}
                                      for t in PROXY_STOPS} if name == "proxy_prob" else {}
            rows.append(row)
        _margins(rows)
        out += rows
    for r in out:
        for part in ("within", "pooled", "real"):
            r.pop(f"_seeds_{part}")
    return out


def _margins(rows: list[dict]) -> None:
    """Each detector's AUROC minus the best trivial score's, seed by seed (the best by its
    mean over seeds), for every part a trivial score is defined in."""
    for part in ("within", "pooled", "real"):
        base = [r for r in rows if r["kind"] == "baseline" and math.isfinite(r[f"auroc_{part}"][0])]
        best = max(base, key=lambda r: r[f"auroc_{part}"][0], default=None)
        for r in rows:
            if r["kind"] != "detector":
                continue
            if best is None:
                r[f"margin_{part}"], r[f"best_baseline_{part}"] = (math.nan,) * 3, None
                continue
            diff = [a - b for a, b in zip(r[f"_seeds_{part}"], best[f"_seeds_{part}"])]
            r[f"margin_{part}"], r[f"best_baseline_{part}"] = mean_ci(diff, bounds=(-1.0, 1.0)), best["score"]


def equal_proxy_grading(cells: list[dict]) -> list[dict]:
    """Per domain and bin of the proxy's own probability: every source's outputs (all
    levels) with a per-sample truth pooled per seed, the AUROC of each score for the
    truth's atypical outputs; mean and Student-t interval over seeds."""
    memo: dict = {}
    pooled: dict[tuple, dict[int, list]] = {}
    for c in cells:
        samples = _samples(c, memo) if detector_names(c) else None
        if not samples or PER_SAMPLE_TRUTH not in samples:
            continue
        prob = samples["proxy_prob"]
        for lo, hi in PROXY_BINS:
            inside = (prob >= lo) & ((prob < hi) if hi < 1 else (prob <= hi))
            for name, kind in score_names(c):
                v = sample_scores(c, samples, name)
                if v is None or name == "pressure":   # a knob's value means nothing across sources
                    continue
                key = (c["spec"]["domain"], (lo, hi), name, kind)
                got = pooled.setdefault(key, {}).setdefault(c["spec"]["seed"], [[], []])
                got[0].append(samples[PER_SAMPLE_TRUTH][inside])
                got[1].append(v[inside])
    out = []
    for (domain, (lo, hi), name, kind), by_seed in sorted(pooled.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        aucs = [_auc(np.concatenate(t), np.concatenate(v)) for t, v in by_seed.values()]
        finite = [a for a in aucs if math.isfinite(a)]
        if kind == "baseline" and finite and np.mean(finite) < 0.5:
            aucs = [1 - a for a in aucs]   # a trivial score read the way that serves it best
        out.append({"domain": domain, "bin": [lo, hi], "score": name, "kind": kind, "auroc": mean_ci(aucs, bounds=(0.0, 1.0)),
                    "outputs": int(sum(len(np.concatenate(t)) for t, _ in by_seed.values())),
                    "atypical": int(sum(np.nansum(np.concatenate(t)) for t, _ in by_seed.values()))})
    return out


def false_positives(cells: list[dict]) -> list[dict]:
    """Per domain and detector, on the cells' real baselines (n test examples per proxy
    replicate and seed; thresholds never saw them): the flagged share with its
    Clopper-Pearson 95% interval, and how many of those sets fire (their share above the
    detector's null q99), against at most 1%. The seeds' sets are drawn from one test
    split, so an example can recur across them: benchmarks/detector_calibration.py
    measures the same on fresh draws."""
    from scipy.stats import binomtest

    from optbench.record import REAL_PREFIX
    memo: dict = {}
    seen, counts = set(), {}
    for c in cells:
        spec = c["spec"]
        key = (spec["domain"], spec["proxy"], spec.get("proxy_training", "shipped"), spec["seed"], spec["n_samples"])
        samples = _samples(c, memo) if detector_names(c) else None
        if not samples or key in seen:
            continue
        seen.add(key)
        for d in detector_names(c):
            flags = samples.get(f"{REAL_PREFIX}det_{d}")
            if flags is None or not np.isfinite(flags).any():
                continue
            f = flags[np.isfinite(flags)]
            k = counts.setdefault((spec["domain"], d), [0, 0, 0, 0])
            k[0] += int(f.sum())
            k[1] += len(f)
            k[2] += 1
            k[3] += int(f.mean() > detector_threshold(c, d))
    out = []
    for (domain, d), (flagged, total, sets, fired) in sorted(counts.items()):
        ci = binomtest(flagged, total).proportion_ci(0.95, method="exact")
        out.append({"domain": domain, "detector": d, "flagged": flagged, "examples": total, "sets": sets,
                    "rate": flagged / total, "lo": float(ci.low), "hi": float(ci.high), "nominal": FLAG_RATE,
                    "sets_fired": fired})
    return out


def _ci(v: tuple[float, float, float], digits: int = 2) -> str:
    mean, lo, hi = v
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if math.isfinite(lo) and lo != hi else "")


def _signed(v: tuple[float, float, float]) -> str:
    mean, lo, hi = v
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) and lo != hi else "")


def grading_markdown(rows: list[dict], fp: list[dict] | None = None, equal: list[dict] | None = None) -> str:
    lines = []
    for domain in dict.fromkeys(r["domain"] for r in rows):
        members = [r for r in rows if r["domain"] == domain]
        lines += [f"### {domain}", "",
                  f"Truth: `{PER_SAMPLE_TRUTH}` per output where the domain has it; departure by "
                  f"`{members[0]['departure_truth']}`; worth: `{members[0]['worth']}`. AUROCs: {INTERVAL_METHOD} "
                  "(one value per seed); trivial scores in italics; margin: the detector minus the best trivial "
                  "score (named), paired by seed.", "",
                  "| source | score | AUROC within level | margin | AUROC pooled over levels | margin "
                  "| AUROC vs real at the truth's departure | margin | earlier | same | later | never "
                  "| fired | regret | regret, never stopping |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in members:
            name = f"`{r['score']}`" if r["kind"] == "detector" else f"*{r['score']}*"
            det = r["kind"] == "detector"

            def margin(part):
                return f"{_signed(r[f'margin_{part}'])} vs *{r[f'best_baseline_{part}']}*" \
                    if det and r.get(f"best_baseline_{part}") else ""
            tail = (f"{r['earlier']} | {r['same']} | {r['later']} | {r['never']} | {r['fired']}/{r['cells']} "
                    f"| {_ci(r['regret'])} | {_ci(r['regret_never_stop'])}") if det else " | | | | | |"
            lines.append(f"| {r['source']} | {name} | {_ci(r['auroc_within'])} | {margin('within')} "
                         f"| {_ci(r['auroc_pooled'])} | {margin('pooled')} | {_ci(r['auroc_real'])} "
                         f"| {margin('real')} | {tail} |")
        stops = [r for r in members if r.get("proxy_stops")]
        if stops:
            lines += ["", "Stopping where the proxy's mean probability first reaches a threshold, for comparison "
                      "with the detectors' stopping rule (regret, and cells stopped after the truth departed):", "",
                      "| source | " + " | ".join(f"proxy {t}" for t in PROXY_STOPS) + " |",
                      "|---|" + "---|" * len(PROXY_STOPS)]
            for r in stops:
                lines.append(f"| {r['source']} | " + " | ".join(
                    f"{_ci(v['regret'])} ({v['departed_at_stop']}/{r['cells']})" for v in r["proxy_stops"].values()) + " |")
        lines.append("")
    if equal:
        lines += ["### At equal proxy score", "",
                  "Outputs of every source and level pooled within bins of the proxy's own probability; AUROC "
                  f"for the truth's atypical outputs, {INTERVAL_METHOD}.", "",
                  "| domain | proxy probability | score | AUROC | outputs (atypical) |", "|---|---|---|---|---|"]
        for r in equal:
            name = f"`{r['score']}`" if r["kind"] == "detector" else f"*{r['score']}*"
            lines.append(f"| {r['domain']} | [{r['bin'][0]:g}, {r['bin'][1]:g}{']' if r['bin'][1] == 1 else ')'} "
                         f"| {name} | {_ci(r['auroc'])} | {r['outputs']} ({r['atypical']}) |")
        lines.append("")
    if fp:
        lines += ["### Out-of-sample false-positive rate", "",
                  "Flagged share of the cells' real test examples (never used to calibrate), each proxy replicate "
                  f"and seed once; Clopper-Pearson 95% interval; nominal {FLAG_RATE:.0%}. The seeds' sets come from one "
                  "test split, so an example can recur; sets firing: real sets whose flagged share is above the "
                  "detector's null q99 (at most 1% expected). Fresh draws: benchmarks/detector_calibration.py.", "",
                  "| domain | detector | flagged / examples | rate | interval | real sets firing |",
                  "|---|---|---|---|---|---|"]
        for r in fp:
            lines.append(f"| {r['domain']} | `{r['detector']}` | {r['flagged']} / {r['examples']} "
                         f"| {r['rate']:.2%} | [{r['lo']:.2%}, {r['hi']:.2%}] | {r['sets_fired']}/{r['sets']} |")
        lines.append("")
    return "\n".join(lines)


DETECTORS_SCHEMA = "optbench.detectors/2"


def grading_rows(data) -> list[dict]:
    """The rows of a loaded detectors.json: {"schema", "rows"}, or the bare list of
    folders written before detectors.json carried a schema."""
    return data if isinstance(data, list) else data["rows"]


def write_grading(cells: list[dict], suite_dir: Path, plots: Path, rows: list[dict] | None = None,
                  fp: list[dict] | None = None, equal: list[dict] | None = None) -> bool:
    """detectors.md, detectors.json and plots/detectors.png when cells recorded detectors
    (`rows`, `fp`, `equal`: grade, false_positives and equal_proxy_grading of the cells,
    where the caller has them)."""
    rows = grade(cells) if rows is None else rows
    if not rows:
        return False
    from optbench.storage import write_atomic
    fp = false_positives(cells) if fp is None else fp
    equal = equal_proxy_grading(cells) if equal is None else equal
    write_atomic(Path(suite_dir) / "detectors.json",
                 json.dumps({"schema": DETECTORS_SCHEMA, "rows": rows, "false_positives": fp,
                             "equal_proxy": equal}, indent=1) + "\n")
    write_atomic(Path(suite_dir) / "detectors.md", "# Detectors graded against the truth\n\n"
                 + (__doc__ or "").split("\n\n", 1)[1] + "\n\n" + grading_markdown(rows, fp, equal))
    detectors_figure(rows, Path(plots) / "detectors.png")
    return True


def detectors_figure(rows: list[dict], out: Path) -> None:
    """One panel per domain: scores as rows (detectors, then the trivial scores below a
    line), sources as columns; colour and text: the per-sample AUROC within a level
    (grey: undefined), or against real data where the domain has no per-sample truth."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    width = max(len({r["source"] for r in rows if r["domain"] == d}) for d in domains)
    fig, axes = plt.subplots(1, len(domains), figsize=(2.2 + 1.5 * width * len(domains), 4.6), squeeze=False)
    cmap = plt.get_cmap("RdBu").with_extremes(bad="0.85")
    for ax, domain in zip(axes[0], domains):
        members = [r for r in rows if r["domain"] == domain]
        part = "within" if any(math.isfinite(r["auroc_within"][0]) for r in members) else "real"
        sources = list(dict.fromkeys(r["source"] for r in members))
        scores = list(dict.fromkeys(r["score"] for r in members))
        grid = np.full((len(scores), len(sources)), np.nan)
        for r in members:
            i, j = scores.index(r["score"]), sources.index(r["source"])
            grid[i, j] = r[f"auroc_{part}"][0]
            if math.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if abs(grid[i, j] - 0.5) > 0.35 else "black")
        im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
        ax.axhline(sum(r["kind"] == "detector" for r in members if r["source"] == sources[0]) - 0.5,
                   color="black", lw=1.5)
        ax.set_xticks(range(len(sources)), [s.replace("_", " ") for s in sources], rotation=25, ha="right",
                      fontsize=9)
        ax.set_yticks(range(len(scores)), [s if any(r["score"] == s and r["kind"] == "detector" for r in members)
                                          else f"{s} (trivial)" for s in scores] if ax is axes[0][0] else [],
                      fontsize=9)   # every panel lists the same scores in the same order
        ax.set_title(f"{domain}: AUROC {'within a level' if part == 'within' else 'vs real data'}", fontsize=10)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="per-sample AUROC (mean over seeds)")
    fig.suptitle("Detectors and trivial scores, per sample at fixed pressure: departed vs typical outputs "
                 "(exact domains) or outputs vs real data (MNIST)", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
