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

Levels where a set metric is undefined (best-of-n beyond its exact range) are skipped.

A pooled miss rate is set by the suite's mix of curves, so the same tallies are also
given per family of curves (`families`): per source, with the controls (an untrained
proxy, matched noise) apart, and with the levels of curves already off the data at their
first level (by the truth) apart from those that left under pressure. Each rate has its
Clopper-Pearson 95% interval, and the referees are ranked per domain by their balanced
error, the mean of the miss and false-alarm rates, on treated curves that started on the
data (a referee that always fires misses nothing)."""
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
    # On the grid: refinement resolves KID and the truths only, not the other referees.
    truth, learned = departs_at(cell, truth_key, refined=False), departs_at(cell, metric, refined=False)
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


def family(cell: dict) -> str:
    """A cell's family: its source, "(control)" for an untrained proxy or matched noise."""
    from optbench.report.controls import is_noise_control, is_untrained_control
    control = is_untrained_control(cell["spec"]) or is_noise_control(cell["spec"])
    return cell["spec"]["source"] + (" (control)" if control else "")


def off_at_start(cell: dict, truth_key: str) -> bool:
    """Whether the truth already calls the cell's first level departed."""
    row = cell["curve"]["rows"][0]
    return bool(departed(cell["curve"].get("null") or {}, truth_key, row.get(truth_key, math.nan)))


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest
    if n == 0:
        return math.nan, math.nan
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return float(ci.low), float(ci.high)


def family_tallies(cells: list[dict], truth_key: str = FIRST_FIRE_TRUTH) -> list[dict]:
    """Per learned referee, family of curves and start (on the data at the first level
    or already off it): misses over the levels the truth calls departed and false alarms
    over those it calls on the data, with Clopper-Pearson 95% intervals."""
    if not any(truth_key in c["curve"]["rows"][0] for c in cells):
        truth_key = TRUTH
    tallies: dict[tuple, list[int]] = {}
    for c in cells:
        null = c["curve"].get("null") or {}
        group = (family(c), "off at start" if off_at_start(c, truth_key) else "on the data at start")
        for metric in learned_keys(c):
            t = tallies.setdefault((metric, *group), [0, 0, 0, 0])
            for r in c["curve"]["rows"]:
                v, g = r.get(metric, math.nan), r.get(truth_key, math.nan)
                if not (math.isfinite(v) and math.isfinite(g)):
                    continue
                gold_off, learned_off = departed(null, truth_key, g), departed(null, metric, v)
                if gold_off is None or learned_off is None:
                    continue
                if gold_off:
                    t[0] += int(not learned_off)
                    t[1] += 1
                else:
                    t[2] += int(learned_off)
                    t[3] += 1
    out = []
    for (metric, fam, start), (m, dep, fa, on) in sorted(tallies.items()):
        out.append({"metric": metric, "family": fam, "start": start, "truth": truth_key,
                    "misses": m, "departed": dep, "miss": m / dep if dep else math.nan,
                    "miss_ci": clopper_pearson(m, dep), "false_alarms": fa, "on_data": on,
                    "false_alarm": fa / on if on else math.nan, "false_alarm_ci": clopper_pearson(fa, on)})
    return out


def ranking(tallies: list[dict]) -> list[dict]:
    """Referees ranked by balanced error (the mean of the miss and false-alarm rates) on
    treated curves that started on the data (controls and curves off at start left
    out); ties share a rank."""
    pooled: dict[str, list[int]] = {}
    for t in tallies:
        if t["family"].endswith("(control)") or t["start"] != "on the data at start":
            continue
        p = pooled.setdefault(t["metric"], [0, 0, 0, 0])
        p[0] += t["misses"]
        p[1] += t["departed"]
        p[2] += t["false_alarms"]
        p[3] += t["on_data"]
    rows = [{"metric": k, "misses": m, "departed": d, "miss": m / d if d else math.nan, "miss_ci": clopper_pearson(m, d),
             "false_alarms": fa, "on_data": on, "false_alarm": fa / on if on else math.nan,
             "false_alarm_ci": clopper_pearson(fa, on)} for k, (m, d, fa, on) in pooled.items()]
    for r in rows:
        r["balanced_error"] = (r["miss"] + r["false_alarm"]) / 2
    rows.sort(key=lambda r: r["balanced_error"] if math.isfinite(r["balanced_error"]) else math.inf)
    for r in rows:   # ties share a rank; a referee without both kinds of levels gets none
        r["rank"] = next((j + 1 for j, o in enumerate(rows) if o["balanced_error"] == r["balanced_error"]), None)
        r["of"] = len(rows)
    return rows


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
    return {d: audit_domain(members) for d, members in gold_domains(cells).items()}


def gold_domains(cells: list[dict]) -> dict[str, list[dict]]:
    by_domain: dict[str, list[dict]] = {}
    for c in cells:
        if has_gold(c):
            by_domain.setdefault(c["spec"]["domain"], []).append(c)
    return by_domain


def audit_families(cells: list[dict]) -> dict[str, dict]:
    """Per ground-truth domain: the tallies per family of curves and the ranking."""
    out = {}
    for d, members in gold_domains(cells).items():
        tallies = family_tallies(members)
        out[d] = {"families": tallies, "ranking": ranking(tallies)}
    return out


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


def _rate(r: dict, key: str) -> str:
    n = r["departed"] if key == "miss" else r["on_data"]
    k = r["misses"] if key == "miss" else r["false_alarms"]
    if not n:
        return "-"
    lo, hi = r[f"{key}_ci"]
    return f"{k}/{n} = {100 * k / n:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def families_markdown(result: dict[str, dict], metrics: tuple[str, ...] = ("kid",)) -> str:
    lines = []
    for domain, parts in result.items():
        truth = parts["families"][0]["truth"] if parts["families"] else TRUTH
        lines += [f"### {md_text(domain, in_table=False)}: per family of curves", "",
                  f"Against `{truth}`; misses over its departed levels, false alarms over its on-the-data levels, "
                  "Clopper-Pearson 95% intervals in percent. Controls: an untrained proxy or matched noise; "
                  "'off at start': curves the truth calls off the data at their first level.", "",
                  "| referee | family | start | miss | false alarm |", "|---|---|---|---|---|"]
        for r in parts["families"]:
            if r["metric"] in metrics:
                lines.append(f"| `{r['metric']}` | {md_text(r['family'])} | {r['start']} | {_rate(r, 'miss')} "
                             f"| {_rate(r, 'false_alarm')} |")
        lines += ["", "Ranking of the referees by balanced error (mean of the miss and false-alarm rates) on "
                  "treated curves that started on the data (controls and curves off at start left out):", "",
                  "| rank | referee | balanced error | miss | false alarm |", "|---|---|---|---|---|"]
        for r in parts["ranking"]:
            if r["rank"] is None:
                continue
            lines.append(f"| {r['rank']} of {r['of']} | `{r['metric']}` | {100 * r['balanced_error']:.0f}% "
                         f"| {_rate(r, 'miss')} | {_rate(r, 'false_alarm')} |")
        lines.append("")
    return "\n".join(lines)


AUDIT_SCHEMA = "optbench.audit/1"


def audit_rows(data) -> dict[str, list[dict]]:
    """The rows by domain of a loaded audit.json: {"schema", "domains"}, or the bare
    table of folders written before audit.json carried a schema."""
    return data["domains"] if "schema" in data else data


def write_audit(cells: list[dict], suite_dir: Path, plots: Path,
                result: dict[str, list[dict]] | None = None, families: dict | None = None) -> dict | None:
    """audit.md, audit.json and the miss figures, when the suite has ground-truth cells
    (`result`, `families`: audit(cells) and audit_families(cells) where the caller has them)."""
    result = audit(cells) if result is None else result
    if not result:
        return None
    from optbench.storage import write_atomic
    families = audit_families(cells) if families is None else families
    write_atomic(Path(suite_dir) / "audit.json",
                 json.dumps({"schema": AUDIT_SCHEMA, "domains": result, "families": families}, indent=1) + "\n")
    write_atomic(Path(suite_dir) / "audit.md", "# Referee audit\n\n" + (__doc__ or "").split("\n\n", 1)[1]
                 + "\n\n" + audit_markdown(result) + "\n" + families_markdown(families))
    from optbench.report.gold_figures import misses_figure
    for domain in result:
        members = [c for c in cells if c["spec"]["domain"] == domain]
        out = plots / f"audit_misses_{file_slug(domain)}.png"
        misses_figure(Path(suite_dir), domain, misses(members), out)
    return result
