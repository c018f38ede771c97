"""The referee audit: on a ground-truth domain, every learned referee is graded against
the exact departure its outputs show (optbench/gold).

Two truths are computed at every pressure level, each with its exact null (n true
samples, optbench/gold/__init__.py), and each has left the data beyond that null's 99th
percentile:
  support       `gold_atypical`: the share of outputs outside the central 99% of real
                log-densities. Outputs no real sample resembles.
  distribution  `gold_ks`: the Kolmogorov-Smirnov distance of the outputs' log-density
                quantiles from the uniform law they follow on real data. Outputs that
                are each typical but together unlike the data (all at a mode) depart
                here and not by support; it is the truth a KID or FID should track.
Each learned
referee (KID, FID, precision, recall, density, coverage and the two-sample test, in every
feature space) is read the same way against its own real-against-real null
(referees/null.py). Per domain the audit reports, for each learned referee:

  rho         Spearman rank correlation with each truth over every (curve, level) of
              one seed, the referee's sign oriented so that +1 is perfect agreement; mean
              and Student-t 95% interval over seeds.
  miss        share of levels a truth calls departed at which the referee reads "on
              the data" (within its null).
  false alarm share of levels a truth calls on the data at which the referee fires.
  first fire  per cell, where the referee's departure point (report/summary.departs_at:
              first level from which it stays beyond its threshold) falls against the
              distribution truth's: earlier, the same level, later, never (truth
              departs, it does not), or alone (it departs, the truth does not).

Levels where a set metric is undefined (best-of-n beyond its exact range) are skipped."""
from __future__ import annotations

import json
import math
from pathlib import Path

from scipy.stats import spearmanr

from optbench.metrics import departure_side, with_role
from optbench.referees.null import departed
from optbench.report.intervals import INTERVAL_METHOD, mean_ci
from optbench.report.summary import departs_at
from optbench.text import file_slug, md_text

TRUTH = "gold_atypical"                 # a ground-truth cell has it
TRUTHS = {"support": "gold_atypical", "distribution": "gold_ks"}
FIRST_FIRE_TRUTH = "gold_ks"


def has_gold(cell: dict) -> bool:
    return TRUTH in cell["curve"]["rows"][0]


def learned_keys(cell: dict) -> list[str]:
    """Every learned distribution metric the cell measured, in every feature space."""
    learned = {m.name for m in with_role("referee") if m.departs}   # built-in or plug-in
    return [k for k in cell["curve"]["rows"][0] if k.split("@")[0] in learned]


def _sign(metric: str) -> int:
    return 1 if departure_side(metric) == "high" else -1


def _level_index(cell: dict, level: float) -> float:
    knob = cell["spec"]["knob"]
    levels = [r[knob] for r in cell["curve"]["rows"]]
    return float(levels.index(level)) if math.isfinite(level) else math.nan


def first_fire_truth(cell: dict) -> str:
    """The distribution truth where the domain has one (a mixture), else the support
    truth (a rendered domain has no log-density)."""
    return FIRST_FIRE_TRUTH if FIRST_FIRE_TRUTH in cell["curve"]["rows"][0] else TRUTH


def fire_order(cell: dict, metric: str, truth_key: str | None = None) -> str:
    """Where `metric` departs relative to the truth in one cell: earlier, same, later,
    never, alone, or neither."""
    truth_key = truth_key or first_fire_truth(cell)
    truth, learned = departs_at(cell, truth_key), departs_at(cell, metric)
    t, m = _level_index(cell, truth), _level_index(cell, learned)
    if math.isnan(t):
        return "neither" if math.isnan(m) else "alone"
    if math.isnan(m):
        return "never"
    return "earlier" if m < t else "same" if m == t else "later"


def audit_domain(cells: list[dict]) -> list[dict]:
    """One row per learned referee over the cells of one domain."""
    seeds = sorted({c["spec"]["seed"] for c in cells})
    out = []
    for metric in learned_keys(cells[0]):
        row = {"metric": metric}
        for name, truth_key in TRUTHS.items():
            rhos, miss, false_alarm = [], [0, 0], [0, 0]
            for seed in seeds:
                truth, value = [], []
                for c in (c for c in cells if c["spec"]["seed"] == seed):
                    null = c["curve"].get("null") or {}
                    for r in c["curve"]["rows"]:
                        v, g = r.get(metric, math.nan), r.get(truth_key, math.nan)
                        if not (math.isfinite(v) and math.isfinite(g)):
                            continue
                        truth.append(g)
                        value.append(_sign(metric) * v)
                        gold_off, learned_off = departed(null, truth_key, g), departed(null, metric, v)
                        if gold_off is None or learned_off is None:
                            continue
                        tally = miss if gold_off else false_alarm
                        tally[0] += int(learned_off != gold_off)
                        tally[1] += 1
                if len(set(truth)) > 1 and len(set(value)) > 1:
                    rhos.append(float(spearmanr(truth, value).statistic))
            rho, lo, hi = mean_ci(rhos)
            row |= {f"rho_{name}": rho, f"rho_{name}_lo": lo, f"rho_{name}_hi": hi, f"seeds_{name}": len(rhos),
                    f"miss_{name}": miss[0] / miss[1] if miss[1] else math.nan, f"departed_{name}": miss[1],
                    f"false_alarm_{name}": false_alarm[0] / false_alarm[1] if false_alarm[1] else math.nan,
                    f"on_data_{name}": false_alarm[1]}
        orders = {k: 0 for k in ("earlier", "same", "later", "never", "alone", "neither")}
        for c in cells:
            orders[fire_order(c, metric)] += 1
        out.append(row | orders | {"first_fire_truth": first_fire_truth(cells[0])})
    return out


def misses(cells: list[dict], metric: str = "kid", k: int = 6) -> list[tuple[dict, int, dict]]:
    """Up to k levels (cell, row index, row) where the support truth departed and
    `metric` reads on the data, the most atypical first, at most one per curve."""
    found = []
    for c in cells:
        null = c["curve"].get("null") or {}
        for i, r in enumerate(c["curve"]["rows"]):
            v = r.get(metric, math.nan)
            if math.isfinite(v) and departed(null, TRUTH, r[TRUTH]) and departed(null, metric, v) is False:
                found.append((c, i, r))
    found.sort(key=lambda f: -f[2][TRUTH])
    out, labels = [], set()
    for f in found:
        if f[0]["spec"]["label"] not in labels:
            labels.add(f[0]["spec"]["label"])
            out.append(f)
    return out[:k]


def audit(cells: list[dict]) -> dict[str, list[dict]]:
    """The audit of every ground-truth domain among the cells, by domain."""
    by_domain: dict[str, list[dict]] = {}
    for c in cells:
        if has_gold(c):
            by_domain.setdefault(c["spec"]["domain"], []).append(c)
    return {d: audit_domain(members) for d, members in by_domain.items()}


def _pct(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{100 * v:.0f}%"


def _rho(r: dict, name: str) -> str:
    rho, lo, hi = r[f"rho_{name}"], r[f"rho_{name}_lo"], r[f"rho_{name}_hi"]
    if not math.isfinite(rho):
        return "n/a"
    return f"{rho:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(lo) else "")


def audit_markdown(result: dict[str, list[dict]]) -> str:
    lines = []
    for domain, rows in result.items():
        key = "rho_distribution" if rows[0]["seeds_distribution"] else "rho_support"
        rows = sorted(rows, key=lambda r: -r[key] if math.isfinite(r[key]) else math.inf)
        r0 = rows[0]
        distribution = (f"the distribution truth: {r0['departed_distribution']} ({r0['on_data_distribution']})"
                        if r0["seeds_distribution"] else "no distribution truth on this domain")
        lines += [f"### {md_text(domain, in_table=False)}", "",
                  f"rho: Spearman correlation with the truth, {INTERVAL_METHOD} ({r0['seeds_support']} seeds). "
                  f"Levels the support truth calls departed: {r0['departed_support']} (on the data: "
                  f"{r0['on_data_support']}); {distribution}. First fire against `{r0['first_fire_truth']}`, "
                  "in cells.", "",
                  "| referee | rho, distribution | rho, support | miss, distribution | false alarm, distribution "
                  "| miss, support | earlier | same | later | never | alone |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| `{r['metric']}` | {_rho(r, 'distribution')} | {_rho(r, 'support')} | "
                         f"{_pct(r['miss_distribution'])} | {_pct(r['false_alarm_distribution'])} | "
                         f"{_pct(r['miss_support'])} | {r['earlier']} | {r['same']} | {r['later']} | "
                         f"{r['never']} | {r['alone']} |")
        lines.append("")
    return "\n".join(lines)


AUDIT_SCHEMA = "optbench.audit/1"


def audit_rows(data) -> dict[str, list[dict]]:
    """The rows by domain of a loaded audit.json: {"schema", "domains"}, or the bare
    table of folders written before audit.json carried a schema."""
    return data["domains"] if "schema" in data else data


def write_audit(cells: list[dict], suite_dir: Path, plots: Path,
                result: dict[str, list[dict]] | None = None) -> dict | None:
    """audit.md, audit.json and the miss figures, when the suite has ground-truth cells
    (`result`: audit(cells) where the caller has it)."""
    result = audit(cells) if result is None else result
    if not result:
        return None
    from optbench.storage import write_atomic
    write_atomic(Path(suite_dir) / "audit.json",
                 json.dumps({"schema": AUDIT_SCHEMA, "domains": result}, indent=1) + "\n")
    write_atomic(Path(suite_dir) / "audit.md", "# Referee audit\n\n" + (__doc__ or "").split("\n\n", 1)[1]
                 + "\n\n" + audit_markdown(result))
    from optbench.report.gold_figures import misses_figure
    for domain in result:
        members = [c for c in cells if c["spec"]["domain"] == domain]
        out = plots / f"audit_misses_{file_slug(domain)}.png"
        misses_figure(Path(suite_dir), domain, misses(members), out)
    return result
