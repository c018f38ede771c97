"""results.json: every number summary.md shows, keyed so that a writeup can cite it by
a JSON path, with the provenance to trace it (optbench/schemas/results.schema.json).

The numbers have one owner each: the tables `suite_tables` computes once (summary rows,
Goodhart-law fits, the equal-proxy table, the controls, the referee audit, the detector
grading) are what summary.md, audit.md and detectors.md are rendered from and what
`results_document` re-keys here; nothing is computed twice. A curve is keyed by its
label, a pressure or proxy level by its value as text ("0.9", "128"), an estimate over
seeds is {"mean", "lo", "hi"} (Student-t 95% interval of the mean; lo and hi null for
one seed; a departure level is {"median", "lo", "hi", "coverage"}, the order-statistic
interval for the median), a Goodhart-law parameter {"value", "lo", "hi"} (the fit to every seed's
points, and a percentile bootstrap over seeds). Strict JSON: NaN (undefined, not
reached, never) is null, an infinity the string "inf" or "-inf". For example

    results["curves"]["Adam [proxy_cnn]"]["departure"]["kid"]["median"]
    results["curves"]["SGD [proxy_cnn]"]["equal_proxy"]["levels"]["0.9"]["kid"]["mean"]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

from optbench.metrics import headline_metrics
from optbench.report.audit import TRUTHS, audit, audit_families
from optbench.report.controls import controls_table
from optbench.report.detectors import ORDERS, equal_proxy_grading, false_positives, grade
from optbench.report.goodhart import fit_curves
from optbench.report.intervals import INTERVAL_METHOD
from optbench.report.summary import (departure_status, equal_proxy_status, equal_proxy_table, group_cells,
                                     kid_spaces, spends_queries, summarize)

RESULTS_SCHEMA = "optbench.results/1"
RESULTS_FILE = "results.json"
EQUAL_PROXY_LEVELS = (0.5, 0.9, 0.99)


def schema_text() -> str:
    """The JSON Schema of results.json, as shipped in the package."""
    return (resources.files("optbench") / "schemas" / "results.schema.json").read_text()


@dataclass(frozen=True)
class SuiteTables:
    """Every table of a suite's summaries, computed once: summary.md, audit.md,
    detectors.md, their JSON files and results.json are all written from these."""
    rows: list[dict]                  # summary.summarize: one per curve
    fits: list[dict]                  # goodhart.fit_curves: curves whose source has a law
    equal_proxy: list[dict] | None    # summary.equal_proxy_table (headline metrics and every KID space), where shown
    headline: tuple[str, ...]         # the equal-proxy table's headline metrics
    spaces: list[str]                 # KID's key in every feature space (a second table when more than one)
    controls: list[dict]              # controls.controls_table
    audit: dict[str, list[dict]]      # audit.audit: by ground-truth domain
    audit_families: dict[str, dict]   # audit.audit_families: per family of curves, and the ranking
    detectors: list[dict]             # detectors.grade
    detector_false_positives: list[dict]   # detectors.false_positives
    detector_equal_proxy: list[dict]       # detectors.equal_proxy_grading


def suite_tables(cells: list[dict]) -> SuiteTables:
    headline, spaces = headline_metrics(), kid_spaces(cells[0])
    shown = len({c["spec"]["knob"] for c in cells}) > 1 or any(c["curve"].get("equal_proxy") for c in cells)
    metrics = tuple(dict.fromkeys([*headline, *(spaces if len(spaces) > 1 else [])]))
    return SuiteTables(rows=summarize(cells), fits=fit_curves(cells),
                       equal_proxy=equal_proxy_table(cells, EQUAL_PROXY_LEVELS, metrics) if shown else None,
                       headline=headline, spaces=spaces, controls=controls_table(group_cells(cells)),
                       audit=audit(cells), audit_families=audit_families(cells), detectors=grade(cells),
                       detector_false_positives=false_positives(cells),
                       detector_equal_proxy=equal_proxy_grading(cells))


def level_key(v) -> str:
    """A pressure or proxy level as a JSON key: 128 -> "128", 0.9 -> "0.9"."""
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def stat(mean, lo=math.nan, hi=math.nan) -> dict:
    return {"mean": mean, "lo": lo, "hi": hi}


def _col(row: dict, col: str) -> dict:
    return stat(row[col], row[col + "_lo"], row[col + "_hi"])


def curve_entry(row: dict, members: list[dict]) -> dict:
    """One curve of the summary (a summary.summarize row) keyed by what it is; every key
    of the row lands somewhere (a key this function does not know goes to "other")."""
    used = set()

    def take(col: str) -> dict:
        used.update((col, col + "_lo", col + "_hi"))
        return _col(row, col)

    def count(key: str, default=None):
        used.add(key)
        return row.get(key, default)

    stats = [k for k in row if k + "_lo" in row and k + "_hi" in row]
    spec = members[0]["spec"]
    entry = {"domain": spec["domain"], "source": count("source"), "proxy": count("proxy"),
             "knob": count("knob"), "n_samples": count("n_samples"), "seeds": count("seeds"),
             "settings": spec["settings"], "proxy_training": spec.get("proxy_training", "shipped"),
             "cells": [{"id": c["spec"]["cell_id"], "seed": c["spec"]["seed"],
                        "commit": str(c.get("meta", {}).get("git_commit", "unknown"))} for c in members],
             "judges": list(count("judges", [])), "source_values": list(count("source_values", [])),
             "judge_peak": {"at": take("judge_peak_at"), "prob": take("judge_peak_prob")},
             "at_max": {}, "real": {}, "baseline": {"kid": take("baseline_kid"), "fid": take("baseline_fid")},
             "departure": {}, "cell_seconds": take("cell_seconds") if "cell_seconds" in stats else stat(math.nan)}
    count("label")
    for k in stats:
        if k.endswith("_cross_at"):
            metric = k[:-len("_cross_at")]
            seeds = count("kid_crossed_seeds") if metric == "kid" else count(f"{k}_seeds", 0)
            level = take(k)
            entry["departure"][metric] = {"median": level["mean"], "lo": level["lo"], "hi": level["hi"],
                                          "coverage": count(f"{k}_coverage", math.nan),
                                          "status": departure_status(row, metric),
                                          "seeds_departed": seeds - count(f"{metric}_start_seeds", 0),
                                          "seeds_at_start": row.get(f"{metric}_start_seeds", 0),
                                          "seeds_with_null": count(f"{metric}_null_seeds", row["seeds"]),
                                          "resolution": count(f"{metric}_resolution", math.nan)}
    for k in stats:
        if k in used:
            continue
        if k.endswith("_at_max"):
            entry["at_max"][k[:-len("_at_max")]] = take(k)
        elif k.endswith("_real"):
            entry["real"][k[:-len("_real")]] = take(k)
    kid = entry["departure"].get("kid")
    if kid is not None:
        kid |= {"threshold": take("kid_threshold"), "null_mean": take("kid_null_mean"),
                "queries": take("kid_cross_queries")}
    # "<metric>_null_seeds" of a feature space whose metric has no departure key
    spaces = {k[:-len("_null_seeds")]: row[k] for k in row if k.endswith("_null_seeds") and k not in used}
    used.update(f"{m}_null_seeds" for m in spaces)
    for metric, n in spaces.items():
        # (summary.md shows "-": the curve's first cell has no null for it)
        entry["departure"].setdefault(metric, {"median": math.nan, "lo": math.nan, "hi": math.nan,
                                               "coverage": math.nan,
                                               "status": "no null" if not n else "not shown",
                                               "seeds_departed": 0, "seeds_at_start": 0, "seeds_with_null": n,
                                               "resolution": math.nan})
    entry["other"] = {k: v for k, v in row.items() if k not in used}
    return entry


def equal_proxy_entry(row: dict, metrics: tuple[str, ...], levels=EQUAL_PROXY_LEVELS) -> dict:
    """A curve's equal-proxy row (summary.equal_proxy_table) by level, then metric."""
    out = {"how": row["how"], "queries_max": row["queries_max"], "levels": {}}
    if row["how"] == "stopped":
        out["stopped"] = {level_key(lv): {"reached_frac": stat(*row[f"reached_frac@{lv}"]),
                                          "steps": stat(*row[f"steps@{lv}"])} for lv in levels}
    for lv in levels:
        out["levels"][level_key(lv)] = {
            m: {**stat(*row[f"{m}@{lv}"]), "status": equal_proxy_status(row, m, lv),
                "seeds_reached": row[f"{m}@{lv}_reached"], "seeds_proxy_reached": row[f"{m}@{lv}_proxy_reached"],
                "seeds_at_first": row[f"{m}@{lv}_at_first"], "measured": row[f"{m}@{lv}_measured"]}
            for m in metrics}
    return out


def equal_compute_entry(row: dict, levels=EQUAL_PROXY_LEVELS) -> dict:
    """Proxy forward passes per sample to reach each proxy level (the equal-compute table)."""
    return {level_key(lv): {**stat(*row[f"queries@{lv}"]), "seeds_reached": row[f"queries@{lv}_reached"]}
            for lv in levels}


def fit_entry(row: dict) -> dict:
    """A Goodhart-law fit (goodhart.fit_curves row) without its fit object."""
    out = {"law": row["law"], "distance": row["distance"], "seeds": row["seeds"], "n_boot": row["n_boot"],
           "converged": row["fit"] is not None}
    if row["fit"] is None:
        return out | {"note": row.get("note", "")}
    fitted = {k: {"value": row[k], "lo": row[k + "_lo"], "hi": row[k + "_hi"]} for k in ("a", "b", "peak_d")}
    return out | fitted | {"r2": row["r2"],
                  "poor": row["poor"], "no_peak_share": row["no_peak_share"], "boot_fits": row["boot_fits"],
                  "boot_exact": row["boot_exact"]}


def controls_entry(rows: list[dict], labels: dict[str, str]) -> dict:
    """treated curve -> control curve -> the pressure-attributable departure per metric
    and level (controls.controls_table)."""
    out: dict[str, dict] = {}
    for r in rows:
        knob = r["knob"]
        out.setdefault(labels.get(r["treated"], r["treated"]), {})[labels.get(r["control"], r["control"])] = {
            "kind": r["kind"], "knob": knob,
            "metrics": {m: {level_key(p[knob]): {"seeds": p["seeds"], "l2": stat(*p["l2"]),
                                                 "treated": stat(*p["treated"]), "same_step": stat(*p["same_step"]),
                                                 "same_l2": stat(*p["same_l2"])} for p in points}
                        for m, points in r["metrics"].items()}}
    return out


def audit_entry(result: dict[str, list[dict]]) -> dict:
    """domain -> learned referee -> its grading against each truth (audit.audit_domain)."""
    out = {}
    for domain, rows in result.items():
        out[domain] = {}
        for r in rows:
            out[domain][r["metric"]] = {
                **{name: {"truth": key, "rho": stat(r[f"rho_{name}"], r[f"rho_{name}_lo"], r[f"rho_{name}_hi"]),
                          "seeds": r[f"seeds_{name}"], "miss": r[f"miss_{name}"],
                          "departed_levels": r[f"departed_{name}"], "false_alarm": r[f"false_alarm_{name}"],
                          "on_data_levels": r[f"on_data_{name}"]} for name, key in TRUTHS.items()},
                "first_fire": {"truth": r["first_fire_truth"], **{k: r[k] for k in ORDERS}}}
    return out


def detectors_entry(rows: list[dict]) -> dict:
    """domain -> source -> score -> its per-sample grading (detectors.grade): detectors and
    the trivial scores beside them."""
    out: dict[str, dict] = {}
    for r in rows:
        entry = {"kind": r["kind"], "cells": r["cells"], "seeds": r["seeds"], "departure_truth": r["departure_truth"],
                 "worth": r["worth"], "per_sample_cells": r["per_sample_cells"],
                 "auroc": {part: stat(*r[f"auroc_{part}"]) for part in ("within", "pooled", "real")}}
        if r["kind"] == "detector":
            entry |= {"margin": {part: {**stat(*r[f"margin_{part}"]), "over": r[f"best_baseline_{part}"]}
                                 for part in ("within", "pooled", "real")},
                      "regret": stat(*r["regret"]), "regret_never_stop": stat(*r["regret_never_stop"]),
                      "worth_at_stop": stat(*r["worth_at_stop"]), "proxy_at_stop": stat(*r["proxy_at_stop"]),
                      "fired": r["fired"], "departed_at_stop": r["departed_at_stop"],
                      "lead": {k: r[k] for k in ORDERS}}
        elif r.get("proxy_stops"):
            entry["proxy_stops"] = {t: {"regret": stat(*v["regret"]), "departed_at_stop": v["departed_at_stop"]}
                                    for t, v in r["proxy_stops"].items()}
        out.setdefault(r["domain"], {}).setdefault(r["source"], {})[r["score"]] = entry
    return out


def unique_labels(labels: list[str]) -> list[str]:
    """Labels as JSON keys: a label two curves share gets " (2)", " (3)", ... after it."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def results_document(name: str, meta: dict, cells: list[dict], tables: SuiteTables, left_out: dict[str, str],
                     commit: str, report_commit: str) -> dict:
    """results.json's content (plain JSON: clean() it before writing): `commit` the
    suite's (suite_commit), `report_commit` that of the code that made the tables."""
    import optbench
    from optbench.cache import NUMBERS_VERSION
    groups = list(group_cells(cells).values())
    if [r["label"] for r in tables.rows] != [m[0]["spec"]["label"] for m in groups]:
        raise AssertionError("summary rows and curves out of step")   # both iterate group_cells
    keys = unique_labels([r["label"] for r in tables.rows])
    by_key = {}
    for key, row, members in zip(keys, tables.rows, groups):
        entry = curve_entry(row, members)
        other = entry.pop("other")
        by_key[key] = {"label": row["label"], **entry, "fit": None, "equal_proxy": None, "equal_compute": None,
                       "other": other}
    fits = {f["group"]: f for f in tables.fits}
    from optbench.suite import curve_key
    for key, members in zip(keys, groups):
        fit = fits.get(curve_key(members[0]["spec"]))
        if fit is not None:
            by_key[key]["fit"] = fit_entry(fit)
    if tables.equal_proxy is not None:
        metrics = tuple(dict.fromkeys([*tables.headline, *(tables.spaces if len(tables.spaces) > 1 else [])]))
        for key, row in zip(keys, tables.equal_proxy):
            by_key[key]["equal_proxy"] = equal_proxy_entry(row, metrics)
            if spends_queries(row):
                by_key[key]["equal_compute"] = equal_compute_entry(row)
    labels: dict[str, str] = {}   # the controls name curves by label; a shared label: the first curve's
    for r, k in zip(tables.rows, keys):
        labels.setdefault(r["label"], k)
    return {"schema": RESULTS_SCHEMA, "optbench": optbench.__version__, "commit": commit,
            "report_commit": report_commit, "numbers_version": NUMBERS_VERSION, "suite": name,
            "description": meta.get("description", ""),
            "source_file": meta.get("source_file", ""), "command": meta.get("command", "optbench run"),
            "interval": INTERVAL_METHOD, "equal_proxy_levels": list(EQUAL_PROXY_LEVELS),
            "cells_left_out": dict(left_out), "curves": by_key,
            "controls": controls_entry(tables.controls, labels), "audit": audit_entry(tables.audit),
            "audit_families": tables.audit_families,
            "detectors": detectors_entry(tables.detectors),
            "detector_false_positives": tables.detector_false_positives,
            "detector_equal_proxy": [{**r, "auroc": stat(*r["auroc"])} for r in tables.detector_equal_proxy]}


def clean(value):
    """Strict JSON: NaN -> null, +-inf -> "inf" / "-inf", numpy scalars and tuples as
    JSON numbers and lists."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item"):   # numpy scalar
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


def _known(commit) -> bool:
    return isinstance(commit, str) and bool(commit) and commit != "unknown"


def suite_commit(meta: dict, cells: list[dict]) -> str:
    """The commit the suite's cells stand for: that of the run that wrote suite.json
    where it recorded one; else that of the cell finished last (a cell is reused only
    while its id, which holds everything that changes its numbers, still matches, so the
    latest code reproduces every earlier cell); else that of the code running now."""
    if _known(meta.get("git_commit")):
        return meta["git_commit"]
    from datetime import datetime
    finished = []
    for c in cells:
        m = c.get("meta", {})
        try:
            when = datetime.strptime(str(m.get("finished", "")), "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            continue
        if _known(m.get("git_commit")):
            finished.append((when, m["git_commit"]))
    if finished:
        return max(finished)[1]
    from optbench.runner import git_commit
    return git_commit()
