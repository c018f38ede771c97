"""Per-curve summaries over seeds, with Student-t intervals of the mean (report/intervals.py)."""
from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from optbench.report.intervals import DEPARTURE_METHOD, INTERVAL_METHOD, mean_ci, median_interval, seeds_text
from optbench.text import csv_cell, md_text
import optbench.referees  # noqa: F401  (registers the built-in metrics the report reads)
from optbench.metrics import at_max_metrics, departure_side, headline_metrics
from optbench.record import read_cell
from optbench.storage import cell_is_complete

LEGACY_KID_FACTOR = 10.0   # results made before nulls were stored: KID above 10x its real scale


def departure_threshold(curve: dict, metric: str = "kid") -> float:
    """The value beyond which `metric` has "left the data": the 99th percentile of its
    real-against-real null at the curve's sample size (the 1st for metrics where low is
    bad; referees/null.py). Curves computed before nulls were stored fall back, for KID
    only, to the old rule: 10x max(real-against-real KID, its subset std). A curve whose
    stored null lacks the metric (an empty null) has no threshold: NaN."""
    null = (curve.get("null") or {}).get(metric)
    if null is not None:
        return null["q01"] if departure_side(metric) == "low" else null["q99"]
    if metric == "kid" and "null" not in curve and "kid" in curve.get("baseline", {}):
        base = curve["baseline"]
        return LEGACY_KID_FACTOR * max(base["kid"], base["kid_std"])
    return math.nan


def has_threshold(cell: dict, metric: str = "kid") -> bool:
    """Whether `metric` has a departure threshold in this cell: without one, "never
    departed" would be a claim with nothing behind it."""
    return math.isfinite(departure_threshold(cell["curve"], metric))


def departure_rows(cell: dict, refined: bool = True) -> list[dict]:
    """The curve's rows and, with `refined`, the rows refinement added between grid levels
    (optbench/refine.py; they hold only the refined keys), in knob order."""
    rows = cell["curve"]["rows"]
    extra = (cell.get("refined") or {}).get("rows", []) if refined else []
    if not extra:
        return rows
    knob = cell["spec"]["knob"]
    return sorted([*rows, *extra], key=lambda r: r[knob])


def departs_at(cell: dict, metric: str = "kid", refined: bool = True) -> float:
    """The first pressure level from which `metric` lies beyond its departure threshold at
    that level and at every later one where it is defined. Staying beyond is required for
    two reasons: on real data each level crosses the q99 threshold with probability 1%, so
    "first crossing anywhere" has a false-positive rate of up to 1% per level; and a curve
    can start off the data and come back (an unconditional diffusion model at w = 0, then
    the conditional one at w = 1), which is not a departure caused by pressure. Rows
    refinement added between grid levels count (`refined`)."""
    curve, knob = cell["curve"], cell["spec"]["knob"]
    thr, low = departure_threshold(curve, metric), departure_side(metric) == "low"
    defined = [(r[knob], r[metric]) for r in departure_rows(cell, refined) if math.isfinite(r.get(metric, math.nan))]
    at = math.nan
    for level, value in reversed(defined):
        if not (value < thr if low else value > thr):
            break
        at = level
    return at


def departure_resolution(cell: dict, metric: str = "kid") -> float:
    """How finely a departure is resolved: its level minus the last level evaluated before
    it (grid or refined); NaN when it does not depart or departs at the first level."""
    at = departs_at(cell, metric)
    knob = cell["spec"]["knob"]
    before = [r[knob] for r in departure_rows(cell) if math.isfinite(r.get(metric, math.nan)) and r[knob] < at]
    return float(at - before[-1]) if math.isfinite(at) and before else math.nan


def at_start(cell: dict, metric: str = "kid") -> bool:
    """Whether `metric` is beyond its null from the curve's first level on: off the data
    before any pressure, an outcome of its own rather than a departure level."""
    knob = cell["spec"]["knob"]
    return departs_at(cell, metric) == cell["curve"]["rows"][0][knob]


def queries_at_level(cell: dict, level: float, key: str = "proxy_forward") -> float:
    """Proxy queries per sample (`key`: proxy_forward or proxy_backward) that reached the
    pressure level `level`; NaN if the curve has no query count (results made before
    Source.queries) or no such level."""
    knob = cell["spec"]["knob"]
    return next((r.get(key, math.nan) for r in cell["curve"]["rows"] if r[knob] == level), math.nan)


def departure_keys(cell: dict) -> list[str]:
    """Every value of the cell whose metric declares a departure side and has a null in
    the cell (optbench/metrics.py): built-in, exact or plug-in, in every feature space."""
    null = cell["curve"].get("null") or {}
    return [k for k in cell["curve"]["rows"][0] if departure_side(k) and k in null]


def kid_spaces(cell: dict) -> list[str]:
    """KID's key in every feature space the cell measured (the plain one first)."""
    return [k for k in cell["curve"]["rows"][0] if k == "kid" or k.startswith("kid@")]


CELL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")   # a folder inside the suite's, never a path
STRINGS = ("name", "description", "source_file", "command")


def suite_meta(suite_dir: Path) -> dict:
    """The suite's suite.json, checked; {} when the folder has none (its cells are then
    found by folder). Anything else than what the runner writes is a one-line ValueError
    naming the file and the fix."""
    path = Path(suite_dir) / "suite.json"
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except json.JSONDecodeError as e:
        _bad_suite_json(path, {}, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})")
    except UnicodeDecodeError as e:
        _bad_suite_json(path, {}, f"not valid JSON (byte 0x{e.object[e.start]:02x} at position {e.start} "
                                  "is not UTF-8)")
    if not isinstance(meta, dict):
        _bad_suite_json(path, {}, f"expected a JSON object, got {_json_kind(meta)}")
    problem = _suite_meta_problem(meta)
    if problem:
        _bad_suite_json(path, meta, problem)
    return meta


def _suite_meta_problem(meta: dict) -> str | None:
    cells = meta.get("cells", [])
    if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
        return "field 'cells' is not a list of cell folder names"
    bad = next((c for c in cells if not CELL_NAME.fullmatch(c)), None)
    if bad is not None:
        return f"field 'cells' names {bad!r}, which is not a cell folder name"
    labels = meta.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        return "field 'labels' is not a table of strings"
    wrong = next((k for k in STRINGS if not isinstance(meta.get(k, ""), str)), None)
    if wrong:
        return f"field {wrong!r} is not a string"
    return _context_problem(meta.get("context", {}))


def _context_problem(context) -> str | None:
    if not isinstance(context, dict):
        return "field 'context' is not a table"
    for key in ("pythonpath", "plugins"):
        value = context.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"field 'context.{key}' is not a list of strings"
    domains = context.get("domains", {})
    if not isinstance(domains, dict) or not all(isinstance(v, dict) for v in domains.values()):
        return "field 'context.domains' is not a table of domain tables"
    return None


def _json_kind(value) -> str:
    kinds = ((bool, "a boolean"), (str, "a string"), ((int, float), "a number"), (list, "a list"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _bad_suite_json(path: Path, meta: dict, problem: str):
    source = meta.get("source_file")
    suite_file = source if isinstance(source, str) and source and source != "<suite>" else "<suite file>"
    raise ValueError(f"{path}: {problem}; rerun `optbench run {suite_file}` to rewrite it")


def cell_folders(suite_dir: Path) -> list[Path]:
    """The suite's cell folders, in suite order where known (hidden temporaries excluded)."""
    suite_dir = Path(suite_dir)
    order = suite_meta(suite_dir).get("cells", [])
    return [suite_dir / c for c in order] or sorted(
        p for p in suite_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "plots")


def scan_cells(suite_dir: Path) -> tuple[list[dict], dict[str, str]]:
    """Every complete, well-formed cell under a suite folder, in suite order where known,
    labelled as the suite labels it (suite.json), which may differ from the label the
    cell was first computed under; and, by folder name, why each other one is left out."""
    labels = suite_meta(suite_dir).get("labels", {})
    cells, left_out = [], {}
    for folder in cell_folders(suite_dir):
        if not cell_is_complete(folder):
            left_out[folder.name] = "missing, partial or corrupted"
            continue
        try:
            c = read_cell(folder)
        except ValueError as e:   # complete, but not what the runner writes
            left_out[folder.name] = str(e)
            continue
        c["spec"]["label"] = labels.get(c["spec"]["cell_id"], c["spec"]["label"])
        declare_query_counts(c)
        cells.append(c)
    return cells, left_out


def load_cells(suite_dir: Path) -> list[dict]:
    """Every complete, well-formed cell under a suite folder (scan_cells)."""
    return scan_cells(suite_dir)[0]


def declare_query_counts(cell: dict) -> None:
    """Results made before curves recorded proxy queries get them from their source's
    declaration (Source.queries: a function of the settings, the level and n, the same
    one the runner records), so old and new curves share the compute axis."""
    from optbench.pressure import SOURCES
    from optbench.registry import PluginError
    rows, spec = cell["curve"]["rows"], cell["spec"]
    if all("proxy_forward" in r for r in rows):
        return
    try:
        source = SOURCES[spec["source"]]
    except (KeyError, PluginError):     # a plug-in this process has not imported
        return
    if source.queries is None:
        return
    settings = {k: (tuple(s.default) if s.kind is list else s.default) for k, s in source.settings.items()}
    settings |= spec["settings"]
    for r in rows:
        if "proxy_forward" not in r:
            r["proxy_forward"], r["proxy_backward"] = source.queries(settings, r[spec["knob"]], spec["n_samples"])


def curve_stats(cell: dict) -> dict:
    """Per-seed summary numbers of one cell's curve."""
    rows, knob = cell["curve"]["rows"], cell["spec"]["knob"]
    base = cell["curve"]["baseline"]
    judges = {f"{name}_prob" for name in judge_names(cell)}
    judge = [r["judge_prob"] for r in rows]
    peak = int(np.nanargmax(judge)) if np.isfinite(judge).any() else 0
    threshold = departure_threshold(cell["curve"], "kid")
    null = (cell["curve"].get("null") or {}).get("kid", {})
    last = rows[-1]
    # Set metrics (KID, FID) at the highest level where they are defined.
    last_set = next((r for r in reversed(rows) if math.isfinite(r["kid"])), last)
    own = set(source_values(cell))
    return {"judge_peak_at": rows[peak][knob], "judge_peak_prob": judge[peak],
            "kid_cross_at": departs_at(cell, "kid"),
            "kid_cross_queries": queries_at_level(cell, departs_at(cell, "kid", refined=False)),   # grid rows count queries
            "proxy_forward_at_max": last.get("proxy_forward", math.nan),
            "proxy_backward_at_max": last.get("proxy_backward", math.nan),
            **{f"{k}_cross_at": departs_at(cell, k) for k in departure_keys(cell) if k != "kid"},
            **{f"{k}_cross_resolution": departure_resolution(cell, k) for k in departure_keys(cell)},
            **{f"{k}_cross_start": at_start(cell, k) for k in departure_keys(cell)},
            "kid_null_mean": null.get("mean", math.nan),
            "gap_at_max": last["gap"], "proxy_prob_at_max": last["proxy_prob"],
            "judge_prob_at_max": last["judge_prob"], "kid_at_max": last_set["kid"],
            "fid_at_max": last_set["fid"], "diverged_at_max": last["diverged_frac"],
            "baseline_kid": base["kid"], "baseline_fid": base["fid"], "kid_threshold": threshold,
            **{f"{k}_at_max": v for k, v in last.items() if k in judges or k in own
               or k in at_max_metrics()},
            "cell_seconds": cell.get("meta", {}).get("wall_seconds", math.nan),
            **{f"{k}_real": v for k, v in base.items() if k in judges or k == "judge_prob"}}


# Results folders written before spec.json recorded a source's declared values: the
# source values the summary then showed, where a curve has them.
OLD_SOURCE_VALUES = ("frozen_proxy_prob", "retrain_updates", "retrain_samples", "retrain_seconds",
                     "latent_l2", "param_l2", "kl")


def source_values(cell: dict) -> list[str]:
    """The names of the cell's source's own values (its Source.values, recorded in
    spec.json), in the order declared; older folders: those the summary then showed."""
    if "source_values" in cell["spec"]:
        return list(cell["spec"]["source_values"])
    return [k for k in OLD_SOURCE_VALUES if k in cell["curve"]["rows"][-1]]


def judge_names(cell: dict) -> list[str]:
    """The cell's single judges, whatever their names: the referee writes `<judge>_prob`
    and `<judge>_agree` for each (referees.Referee.evaluate); the proxy and the ensemble
    have their own keys."""
    row = cell["curve"]["rows"][0]
    return [k[:-len("_prob")] for k in row if k.endswith("_prob") and k not in ("proxy_prob", "judge_prob")
            and k[:-len("_prob")] + "_agree" in row]


SUMMARY_COLUMNS = ["judge_peak_at", "judge_peak_prob", "kid_cross_at", "gap_at_max",
                   "proxy_prob_at_max", "judge_prob_at_max", "kid_at_max", "fid_at_max",
                   "diverged_at_max", "baseline_kid", "baseline_fid", "kid_threshold", "kid_null_mean"]


def group_cells(cells: list[dict]) -> dict[str, list[dict]]:
    """Cells that differ only in seed, as one curve (suite.curve_key); cells of several
    suites (`optbench compare` tags each with its "suite") form a curve per suite, so
    two suites holding the same curve are not merged into one."""
    from optbench.suite import curve_key
    groups: dict[str, list[dict]] = defaultdict(list)
    for c in cells:
        key = curve_key(c["spec"])
        groups[f"{c['suite']}\n{key}" if "suite" in c else key].append(c)
    return groups


def summarize(cells: list[dict]) -> list[dict]:
    out = []
    for members in group_cells(cells).values():
        spec = members[0]["spec"]
        per_seed = [curve_stats(c) for c in members]
        columns = SUMMARY_COLUMNS + [k for k in per_seed[0] if k not in SUMMARY_COLUMNS
                                     and (k.endswith("_at_max") or k.endswith("_real")
                                          or k.endswith("_cross_at") or k == "cell_seconds"
                                          or k == "kid_cross_queries")]
        spaces = [k for k in kid_spaces(members[0]) if k != "kid"]
        row = {"label": spec["label"], "source": spec["source"], "proxy": spec["proxy"],
               "knob": spec["knob"], "n_samples": spec["n_samples"], "seeds": len(members),
               "judges": judge_names(members[0]), "source_values": source_values(members[0]),
               "kid_crossed_seeds": sum(math.isfinite(p["kid_cross_at"]) for p in per_seed),
               **{f"{k}_seeds": sum(math.isfinite(p[k]) for p in per_seed)
                  for k in per_seed[0] if k.endswith("_cross_at") and k != "kid_cross_at"},
               **{f"{k}_null_seeds": sum(has_threshold(c, k) for c in members)
                  for k in ["kid", *spaces, *departure_keys(members[0])]}}
        for col in columns:
            if col.endswith("_cross_at"):
                row |= departure_columns(col, members, per_seed)
                continue
            mean, lo, hi = mean_ci([p[col] for p in per_seed], bounds=probability_bounds(col))
            row[col], row[col + "_lo"], row[col + "_hi"] = mean, lo, hi
        out.append(row)
    return out


def probability_bounds(col: str) -> tuple[float, float] | None:
    """(0, 1) for a summary column that is a probability (its interval is clipped there)."""
    return (0.0, 1.0) if col.endswith("prob_at_max") or col.endswith("_prob_real") or col == "judge_peak_prob" else None


def departure_columns(col: str, members: list[dict], per_seed: list[dict]) -> dict:
    """A departure column over seeds: the median level and its order-statistic interval
    (intervals.median_interval) over the seeds with a null that were not already off the
    data at the first level, a seed that never departs counting as beyond the highest
    level; the seeds off at the first level, counted apart; the coarsest resolution."""
    metric = col[:-len("_cross_at")]
    start = [bool(p.get(f"{metric}_cross_start", False)) for p in per_seed]
    null = [has_threshold(c, metric) for c in members]
    levels = [math.inf if math.isnan(p[col]) else p[col] for p, st, nl in zip(per_seed, start, null) if nl and not st]
    if not any(math.isfinite(v) for v in levels):   # none departs after the start: no level
        levels = []
    mid, lo, hi, cover = median_interval(levels)
    res = [p.get(f"{metric}_cross_resolution", math.nan) for p, st in zip(per_seed, start) if not st]
    res = [r for r in res if math.isfinite(r)]
    return {col: mid, col + "_lo": lo, col + "_hi": hi, col + "_coverage": cover,
            f"{metric}_start_seeds": sum(st and nl for st, nl in zip(start, null)),
            f"{metric}_resolution": max(res) if res else math.nan}


SUMMARY_SCHEMA = "optbench.summary/1"


def summary_document(rows: list[dict]) -> dict:
    """summary.json: the summarize rows under a schema name."""
    return {"schema": SUMMARY_SCHEMA, "rows": rows}


def summary_rows(data) -> list[dict]:
    """The rows of a loaded summary.json: {"schema", "rows"}, or a bare list (folders
    written before summary.json carried a schema)."""
    return data if isinstance(data, list) else data["rows"]


def tidy_csv(cells: list[dict]) -> str:
    """Every curve point of the suite, one row each: `pd.read_csv(path)`."""
    fields, rows = [], []
    for c in cells:
        s = c["spec"]
        for r in c["curve"]["rows"]:
            row = {"cell_id": s["cell_id"], "label": s["label"], "source": s["source"],
                   "proxy": s["proxy"], "seed": s["seed"], "n_samples": s["n_samples"],
                   **{f"setting_{k}": v for k, v in s["settings"].items()},
                   "knob": s["knob"], "level": r[s["knob"]], **{k: v for k, v in r.items() if k != s["knob"]},
                   **{f"baseline_{k}": v for k, v in c["curve"]["baseline"].items()}}
            rows.append(row)
            fields += [k for k in row if k not in fields]
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow([csv_cell(k) for k in fields])
    w.writerows([csv_cell(r.get(k, "")) for k in fields] for r in rows)
    return f.getvalue()


def _fmt(v: float, lo: float, hi: float, digits: int = 3, missing: str = "n/a") -> str:
    """'v [lo, hi]'; just 'v' when there is no interval (one seed: NaN bounds) or it is
    a point (all seeds equal). An unbounded side prints as 'inf' or '-inf'."""
    if not math.isfinite(v):
        return missing
    f = f"{{:.{digits}g}}"
    if math.isnan(lo) or math.isnan(hi) or lo == hi:
        return f.format(v)
    side = lambda x: f.format(x) if math.isfinite(x) else ("inf" if x > 0 else "-inf")  # noqa: E731
    return f"{f.format(v)} [{side(lo)}, {side(hi)}]"


def departed_seeds(r: dict, metric: str) -> int:
    """Seeds whose `metric` departs, off-at-the-first-level ones included."""
    return r["kid_crossed_seeds"] if metric == "kid" else r.get(f"{metric}_cross_at_seeds", 0)


def departure_status(r: dict, metric: str) -> str:
    """Whether a curve (a summarize row) left the data by `metric`: "departed" (some seed
    did, after the first level), "at start" (every seed that departs was already off the
    data at the first level), "never" (no seed did, and a null says so) or "no null" (no
    seed had one)."""
    if not r.get(f"{metric}_null_seeds", r["seeds"]):
        return "no null"
    start = r.get(f"{metric}_start_seeds", 0)
    if departed_seeds(r, metric) > start:
        return "departed"
    return "at start" if start else "never"


def _level(v: float, digits: int = 3) -> str:
    return "never" if v == math.inf else f"{{:.{digits}g}}".format(v)


def _departure(r: dict, metric: str, always_count: bool = False) -> str:
    """The level from which `metric` departs: the median over seeds and its
    order-statistic interval ("never": beyond the highest level), with the seeds that
    depart, those off the data at the first level (counted apart, not in the median),
    those without a null, and the resolution where it is coarser than one step."""
    seeds = r["seeds"]
    with_null = r.get(f"{metric}_null_seeds", seeds)
    status = departure_status(r, metric)
    if status == "no null":
        return "no null"
    start = r.get(f"{metric}_start_seeds", 0)
    n = departed_seeds(r, metric) - start
    notes = [f"{n}/{seeds - start} seeds"] if always_count or 0 < n < seeds - start else []
    notes += [f"{start}/{seeds} off at the first level"] if start else []
    notes += [f"{seeds - with_null} without a null"] if with_null < seeds else []
    res = r.get(f"{metric}_resolution", math.nan)
    notes += [f"resolution {res:g}"] if math.isfinite(res) and res > 1 else []
    mid, lo, hi = r[f"{metric}_cross_at"], r[f"{metric}_cross_at_lo"], r[f"{metric}_cross_at_hi"]
    if status != "departed":
        at = status
    elif math.isnan(lo) or lo == hi:
        at = _level(mid)
    else:
        at = f"{_level(mid)} [{_level(lo)}, {_level(hi)}]"
    return at + (f" ({'; '.join(notes)})" if notes else "")


def _judges_by_prefix(row: dict) -> list[str]:
    """Summary rows made before they listed their judges: the shipped `judge_*` names."""
    return [k[:-len("_prob_at_max")] for k in row if k.startswith("judge_")
            and k.endswith("_prob_at_max") and k != "judge_prob_at_max"]


def summary_markdown(rows: list[dict]) -> str:
    lines = [
        "| curve | seeds | judge prob peaks at | judge peak prob | KID beyond its null's q99 from | "
        "gap at max | proxy prob at max | judge prob at max | KID at max | KID real-vs-real null: mean, q99 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        def c(col, digits=3):
            return _fmt(r[col], r[col + "_lo"], r[col + "_hi"], digits)
        crossed = _departure(r, "kid", always_count=True)
        null = (f"{r['kid_null_mean']:.2g}, {r['kid_threshold']:.2g}" if r.get("kid_null_seeds", 1)
                else "no null")
        lines.append(f"| {md_text(r['label'])} | {r['seeds']} | {r['knob']} {c('judge_peak_at')} | "
                     f"{c('judge_peak_prob')} | {r['knob']} {crossed} | {c('gap_at_max')} | "
                     f"{c('proxy_prob_at_max')} | {c('judge_prob_at_max')} | {c('kid_at_max')} | "
                     f"{null} |")
    # A suite over several domains has each domain's judges and feature spaces: columns are
    # their union, and a curve shows "-" under another domain's.
    names = list(dict.fromkeys(n for r in rows for n in r.get("judges", _judges_by_prefix(r))
                               if f"{n}_prob_at_max" in r))
    if names:
        lines += ["", "Each judge's mean target probability at the highest pressure (and on held-out "
                  "real examples of the target class):", "",
                  "| curve | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for r in rows:
            cells = [f"{_fmt(r[n + '_prob_at_max'], r[n + '_prob_at_max_lo'], r[n + '_prob_at_max_hi'])}"
                     f" (real {r.get(n + '_prob_real', math.nan):.3f})" if n + "_prob_at_max" in r else "-"
                     for n in names]
            lines.append(f"| {md_text(r['label'])} | " + " | ".join(cells) + " |")
    spaces = list(dict.fromkeys(k[:-len("_cross_at")] for r in rows for k in r
                                if k.startswith("kid@") and k.endswith("_cross_at")))
    if spaces:
        lines += ["", "The level from which KID lies beyond its null's q99 at every higher level, in every "
                  "feature space (the plain `kid` is the primary space):", "",
                  "| curve | kid | " + " | ".join(spaces) + " |", "|---|---|" + "---|" * len(spaces)]
        for r in rows:
            cells = [_departure(r, k) if f"{k}_cross_at" in r else "-" for k in ["kid", *spaces]]
            lines.append(f"| {md_text(r['label'])} | " + " | ".join(cells) + " |")
    others = list(dict.fromkeys(k[:-len("_cross_at")] for r in rows for k in r if k.endswith("_cross_at")
                                and "@" not in k and k not in ("kid_cross_at", "judge_peak_at")))
    if others:
        lines += ["", "The level from which each other metric with a null lies beyond it (q99, or q01 for "
                  "metrics that fall when outputs leave the data) at every higher level, primary feature "
                  "space:", "", "| curve | " + " | ".join(others) + " |", "|---|" + "---|" * len(others)]
        for r in rows:
            cells = [_departure(r, k) if f"{k}_cross_at" in r else "-" for k in others]
            lines.append(f"| {md_text(r['label'])} | " + " | ".join(cells) + " |")
    extra = sorted(k for k in at_max_metrics() if f"{k}_at_max" in rows[0])
    if extra:
        lines += ["", "More metrics at the highest pressure (those marked `at_max` in the registry):", "",
                  "| curve | " + " | ".join(extra) + " |", "|---|" + "---|" * len(extra)]
        for r in rows:
            lines.append(f"| {md_text(r['label'])} | " + " | ".join(
                _fmt(r[f"{k}_at_max"], r[f"{k}_at_max_lo"], r[f"{k}_at_max_hi"]) for k in extra) + " |")
    counted = [r for r in rows if r.get("proxy_forward_at_max", math.nan) > 0]   # NaN: no counts
    if counted:
        lines += ["", "Proxy compute: forward and backward passes of the model pushed against, per "
                  "output sample (`Source.queries`), at the highest pressure and at the level "
                  "from which KID has left the data (seeds that left):", "",
                  "| curve | forward at max | backward at max | forward when KID leaves |",
                  "|---|---|---|---|"]
        for r in counted:
            left = _fmt(r["kid_cross_queries"], r["kid_cross_queries_lo"], r["kid_cross_queries_hi"],
                        digits=4, missing="never" if r.get("kid_null_seeds", 1) else "no null")
            if 0 < r["kid_crossed_seeds"] < r["seeds"]:
                left += f" ({r['kid_crossed_seeds']}/{r['seeds']} seeds)"
            lines.append(f"| {md_text(r['label'])} | {r['proxy_forward_at_max']:.6g} | "
                         f"{r['proxy_backward_at_max']:.6g} | {left} |")
    lines += source_values_markdown(rows)
    lines.append("")
    lines.append("Mean over seeds; brackets: 95% interval of the mean "
                 f"{seeds_text(r['seeds'] for r in rows)}, none shown for one seed or when all "
                 "seeds agree. "
                 "'judge prob' is the judge ensemble's mean probability of the target class; "
                 "'gap' is proxy minus judge probability. KID is compared with the 99th "
                 "percentile of its real-against-real null at the same sample size (1,000 sets "
                 "of held-out real examples; referees/null.py), whose mean and q99 are in the last "
                 "column; a curve has left the data from the first level after which KID stays "
                 "beyond it at every higher level, and 'never' means no level starts such a run. "
                 "'no null' means the cell stored no real-against-real null for the metric (none "
                 "could be built at its sample size), so whether it left the data is not known; "
                 "'k without a null' counts such seeds. 'n/a' means the metric is undefined "
                 "there (set metrics of best-of-n beyond n = pool / samples; per-sample metrics of "
                 "selection levels resting on fewer than min_ess pool samples, see `ess`).")
    return "\n".join(lines) + "\n"


def source_values_markdown(rows: list[dict]) -> list[str]:
    """One table per set of source values (a source's `values`, spec.json's
    "source_values"): each curve's values at the highest pressure, and the cell's
    seconds to set them against (online proxies: seconds spent retraining)."""
    lines = []
    tables: dict[tuple, list[dict]] = {}
    for r in rows:
        names = tuple(k for k in r.get("source_values", ()) if f"{k}_at_max" in r)
        if names:
            tables.setdefault(names, []).append(r)
    for names, members in tables.items():
        sources = ", ".join(dict.fromkeys(r["source"] for r in members))
        reading = ("cells made before sources declared their values: `proxy prob at max` above is "
                   "the online proxy's own reading, `frozen_proxy_prob` the original's"
                   if "frozen_proxy_prob" in names else
                   "`proxy prob at max` above is the referee's reading of the proxy the cell names")
        lines += ["", f"Values of the source itself ({md_text(sources)}) at the highest pressure ({reading}):", "",
                  "| curve | " + " | ".join(md_text(k) for k in names) + " | cell seconds |",
                  "|---|" + "---|" * (len(names) + 1)]
        for r in members:
            cells = [_fmt(r[f"{k}_at_max"], r[f"{k}_at_max_lo"], r[f"{k}_at_max_hi"]) for k in names]
            cells.append(_fmt(r["cell_seconds"], r["cell_seconds_lo"], r["cell_seconds_hi"]))
            lines.append(f"| {md_text(r['label'])} | " + " | ".join(cells) + " |")
    return lines


def at_proxy_level(rows: list[dict], metric: str, level: float) -> float:
    """`metric` where the curve first reaches proxy probability `level`, interpolating
    linearly between the two pressure levels around the crossing; NaN if never reached, and
    NaN if the first level is already there (a curve that starts at w = 3: the crossing
    lies somewhere before it and cannot be located)."""
    prev = None
    for r in rows:
        p = r["proxy_prob"]
        if p >= level:
            if prev is None:
                return math.nan
            f = (level - prev["proxy_prob"]) / (p - prev["proxy_prob"])
            return prev.get(metric, math.nan) + f * (r.get(metric, math.nan) - prev.get(metric, math.nan))
        prev = r
    return math.nan


# An exact equal-proxy set counts when at least this share of a seed's samples reached
# the threshold; fewer would score a self-selected minority of easy samples.
MIN_REACHED = 0.9
EQUAL_PROXY_NOTE = ("Referee metrics at equal proxy probability. 'stopped': iterative sources stop "
                    "every sample at the first step where its own proxy probability reaches the "
                    "threshold, and the referees score that set (exact; all samples at >= the "
                    f"threshold; counted when >= {MIN_REACHED:.0%} of a seed's samples got there). "
                    "'interpolated': sources whose levels are not steps (guidance scales, selections "
                    "from one pool) are read where the curve's mean proxy probability first reaches the "
                    "threshold, linearly between pressure levels. Mean over the seeds that reached "
                    f"it, with a {INTERVAL_METHOD} (the number of seeds is under each table). "
                    "'not reached': no seed got there, and (k/n) counts the seeds that did; "
                    "'before the first level': the curve starts above the threshold, so its "
                    "crossing cannot be located; "
                    "'n/a': the metric is undefined there (best-of-n set metrics beyond n = pool / "
                    "samples); 'not measured': the results predate the metric.")


EQUAL_COMPUTE_NOTE = ("Proxy forward passes per output sample spent to reach each proxy probability "
                      "(`Source.queries`): at the stopped samples' mean step for sources that stop "
                      "samples, else where the mean curve crosses the level (interpolated linearly "
                      "between pressure levels). Mean and 95% interval over the seeds that reached "
                      "it; (k/n): only k of n seeds did; 'n/a': not reached, or the curve starts "
                      "above the level. Curves that spend no queries (CFG, the matched-noise "
                      "control) are left out; results made before curves recorded the counts get "
                      "them from their source's declaration.")


def stopped_point(cell: dict, level: float) -> dict | None:
    """The cell's exact equal-proxy point at `level` (runner.equal_proxy_points), if the
    source recorded one."""
    return next((p for p in cell["curve"].get("equal_proxy", []) if p["threshold"] == level), None)


def equal_proxy_value(cell: dict, metric: str, level: float) -> float:
    """`metric` at proxy probability `level`: from the stopped samples when the source
    records them, else interpolated between levels. NaN when not reached."""
    point = stopped_point(cell, level)
    if point is None:
        if cell["curve"].get("equal_proxy"):   # it records stopped points, not this one
            return math.nan
        return at_proxy_level(cell["curve"]["rows"], metric, level)
    if point["reached_frac"] < MIN_REACHED:
        return math.nan
    return point.get(metric, math.nan)


def queries_to_reach(cell: dict, level: float) -> float:
    """Proxy forward passes per sample spent when the cell reaches proxy probability
    `level`: at the stopped samples' mean step when the source stops samples (the count
    interpolated linearly in the knob), else where the mean curve crosses the level."""
    rows = cell["curve"]["rows"]
    if not all("proxy_forward" in r for r in rows):
        return math.nan
    knob = cell["curve"].get("knob") or cell["spec"]["knob"]
    if not cell["curve"].get("equal_proxy"):
        return at_proxy_level(rows, "proxy_forward", level)
    point = stopped_point(cell, level)
    if point is None or point["reached_frac"] < MIN_REACHED:
        return math.nan
    return float(np.interp(point["steps_mean"], [r[knob] for r in rows], [r["proxy_forward"] for r in rows]))


def _reached(cell: dict, level: float) -> bool:
    point = stopped_point(cell, level)
    if point is None:
        return not cell["curve"].get("equal_proxy") and any(r["proxy_prob"] >= level for r in cell["curve"]["rows"])
    return point["reached_frac"] >= MIN_REACHED


def equal_proxy_table(cells: list[dict], levels=(0.5, 0.9, 0.99),
                      metrics: tuple[str, ...] | None = None) -> list[dict]:
    """Per curve: referee metrics at equal proxy probability, mean and CI over seeds
    (`metrics`: the registry's headline metrics by default)."""
    metrics = metrics or headline_metrics()
    out = []
    for members in group_cells(cells).values():
        stopped = all(c["curve"].get("equal_proxy") for c in members)
        row = {"label": members[0]["spec"]["label"], "seeds": len(members),
               **({"suite": members[0]["suite"]} if "suite" in members[0] else {}),
               "how": "stopped" if stopped else "interpolated",
               # forward passes per sample at the highest level: > 0 when the curve spends any
               "queries_max": float(np.nanmean([c["curve"]["rows"][-1].get("proxy_forward", math.nan)
                                                for c in members]))}
        for level in levels:
            spent = [queries_to_reach(c, level) for c in members]
            row[f"queries@{level}"] = mean_ci(spent)
            row[f"queries@{level}_reached"] = sum(math.isfinite(q) for q in spent)
            if stopped:
                points = [stopped_point(c, level) or {} for c in members]
                row[f"reached_frac@{level}"] = mean_ci([p.get("reached_frac", 0.0) for p in points])
                row[f"steps@{level}"] = mean_ci([p.get("steps_mean", math.nan) for p in points])
            for m in metrics:
                vals = [equal_proxy_value(c, m, level) for c in members]
                row[f"{m}@{level}"] = mean_ci(vals)
                row[f"{m}@{level}_reached"] = sum(math.isfinite(v) for v in vals)
                row[f"{m}@{level}_measured"] = any(m in r for c in members for r in c["curve"]["rows"])
                row[f"{m}@{level}_proxy_reached"] = sum(_reached(c, level) for c in members)
                row[f"{m}@{level}_at_first"] = 0 if stopped else sum(
                    c["curve"]["rows"][0]["proxy_prob"] >= level for c in members)
        out.append(row)
    return out


def equal_proxy_markdown(rows: list[dict], levels=(0.5, 0.9, 0.99),
                         metrics: tuple[str, ...] | None = None) -> str:
    metrics = metrics or headline_metrics()
    head = " | ".join(f"{m} @ proxy {lv}" for lv in levels for m in metrics)
    suites = any("suite" in r for r in rows)   # `optbench compare`: which suite each curve is from
    lines = [f"| {'suite | ' if suites else ''}curve | how | {head} |",
             "|---|---|" + ("---|" if suites else "") + "---|" * (len(levels) * len(metrics))]
    for r in rows:
        cells = [r.get("how", "interpolated")]
        for lv in levels:
            for m in metrics:
                mean, lo, hi = r[f"{m}@{lv}"]
                n = r[f"{m}@{lv}_reached"]
                cell = _fmt(mean, lo, hi, missing=equal_proxy_status(r, m, lv))
                cells.append(cell + (f" ({n}/{r['seeds']})" if 0 < n < r["seeds"] else ""))
        suite = f"{md_text(r.get('suite', ''))} | " if suites else ""
        lines.append(f"| {suite}{md_text(r['label'])} | " + " | ".join(cells) + " |")
    if rows:
        lines += ["", f"Brackets: 95% interval of the mean {seeds_text(r['seeds'] for r in rows)}; "
                  "(k/n): only k of the n seeds reached the level, and the interval is over those k."]
    return "\n".join(lines) + "\n"


def equal_proxy_status(r: dict, metric: str, level: float) -> str:
    """"reached" where an equal-proxy table row has a value of `metric` at proxy `level`,
    else why not: "not measured" (the results predate the metric), "not reached", "before
    the first level" (the curve starts above it) or "n/a" (undefined there)."""
    if math.isfinite(r[f"{metric}@{level}"][0]):
        return "reached"
    return ("not measured" if not r.get(f"{metric}@{level}_measured", True) else
            "not reached" if not r.get(f"{metric}@{level}_proxy_reached", 0) else
            "before the first level" if r.get(f"{metric}@{level}_at_first", 0) else "n/a")


def spends_queries(row: dict) -> bool:
    """An equal-proxy table row whose curve spends proxy queries (NaN: no counts)."""
    return row.get("queries_max", math.nan) > 0


def equal_compute_markdown(rows: list[dict], levels=(0.5, 0.9, 0.99)) -> str:
    """Proxy forward passes per sample each curve spent to reach each proxy level: the
    equal-proxy table's compute axis (sources compared at equal proxy compute). Every
    curve that spends queries has a row, also one that reached no level."""
    lines = ["| curve | " + " | ".join(f"forward passes to proxy {lv}" for lv in levels) + " |",
             "|---|" + "---|" * len(levels)]
    for r in filter(spends_queries, rows):
        cells = []
        for lv in levels:
            n = r[f"queries@{lv}_reached"]
            cell = _fmt(*r[f"queries@{lv}"], digits=4, missing="n/a")
            cells.append(cell + (f" ({n}/{r['seeds']})" if 0 < n < r["seeds"] else ""))
        lines.append(f"| {md_text(r['label'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
