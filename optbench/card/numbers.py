"""A card's numbers, read from the battery's cells with the report's own functions
(summary rows, the equal-proxy table, the controls table), so a card never computes a
number the suite's summary computes differently. What the summary lacks and a card
needs is computed here from the same cells: KID at the highest pressure in multiples of
its null's q99, per feature space."""
from __future__ import annotations

import math

from optbench.domains import get_domain
from optbench.report.controls import controls_table, is_noise_control
from optbench.report.intervals import INTERVAL_METHOD, mean_ci
from optbench.report.summary import (departure_threshold, equal_proxy_table, group_cells, kid_spaces, summarize)

PROXY_LEVELS = (0.5, 0.9, 0.99)
AT_PROXY = ("judge_prob", "c2st", "kid")
CONTROL_METRICS = ("kid", "judge_prob")
DEPARTURE_RULE = ("the first pressure level from which the metric stays beyond the 99th percentile "
                  "(1st where low is bad) of its real-against-real null at the same sample size, "
                  "at every later level (optbench/report/summary.py departs_at)")


def _mci(values) -> list[float | None]:
    """(mean, lo, hi) as a JSON list; NaN as null."""
    return [None if not math.isfinite(v) else float(v) for v in mean_ci(values)]


def _triple(row: dict, key: str) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v)
            for v in (row.get(key, math.nan), row.get(key + "_lo", math.nan), row.get(key + "_hi", math.nan))]


def _plain(t) -> list[float | None]:
    return [None if v is None or not math.isfinite(v) else float(v) for v in t]


def space_name(key: str, domain: str) -> str:
    """'kid' -> the domain's primary feature space; 'kid@judge_mlp' -> 'judge_mlp'."""
    return key.split("@", 1)[1] if "@" in key else get_domain(domain).feature_net


def kid_over_q99(cell: dict, key: str) -> float:
    """KID at the highest level where it is defined, over its null's q99."""
    rows = cell["curve"]["rows"]
    last = next((r for r in reversed(rows) if math.isfinite(r.get(key, math.nan))), None)
    thr = departure_threshold(cell["curve"], key)
    return last[key] / thr if last is not None and math.isfinite(thr) and thr > 0 else math.nan


def source_numbers(members: list[dict], row: dict, at_proxy: dict, controls: list[dict]) -> dict:
    spec = members[0]["spec"]
    domain = spec["domain"]
    spaces = kid_spaces(members[0])
    departure = {}
    for key in spaces:
        cross = "kid_cross_at" if key == "kid" else f"{key}_cross_at"
        start = row.get(f"{key}_start_seeds", 0)
        seeds = (row["kid_crossed_seeds"] if key == "kid" else row.get(f"{cross}_seeds", 0)) - start
        departure[space_name(key, domain)] = {"metric": key, "level": _triple(row, cross),
                                              "departed_seeds": seeds, "seeds_at_start": start, "seeds": row["seeds"]}
    gold = {k[:-len("_cross_at")]: {"level": _triple(row, k),
                                    "departed_seeds": row.get(f"{k}_seeds", 0) - row.get(f"{k[:-len('_cross_at')]}_start_seeds", 0),
                                    "seeds_at_start": row.get(f"{k[:-len('_cross_at')]}_start_seeds", 0),
                                    "seeds": row["seeds"]}
            for k in row if k.startswith("gold_") and k.endswith("_cross_at")}
    proxy_points = {}
    for level in PROXY_LEVELS:
        point = {m: _plain(at_proxy[f"{m}@{level}"]) for m in AT_PROXY if f"{m}@{level}" in at_proxy}
        point["seeds_reached"] = at_proxy.get(f"judge_prob@{level}_reached", 0)
        if f"reached_frac@{level}" in at_proxy:
            point["reached_frac"] = _plain(at_proxy[f"reached_frac@{level}"])
        proxy_points[str(level)] = point
    paired = []
    for c in controls:
        paired.append({"kind": c["kind"], "control": c["control"], "knob": c["knob"],
                       "at_max": {m: {"level": c["metrics"][m][-1][c["knob"]],
                                      "same_step": _plain(c["metrics"][m][-1]["same_step"]),
                                      "same_l2": _plain(c["metrics"][m][-1]["same_l2"])}
                                  for m in c["metrics"] if c["metrics"][m]}})
    return {
        "label": spec["label"], "source": spec["source"], "knob": spec["knob"],
        "pressure": spec.get("pressure", spec["knob"]), "settings": spec["settings"],
        "n_samples": spec["n_samples"], "seeds": row["seeds"],
        "max_level": members[0]["curve"]["rows"][-1][spec["knob"]],
        "cell_ids": [c["spec"]["cell_id"] for c in sorted(members, key=lambda c: c["spec"]["seed"])],
        "departure": departure, "gold_departure": gold,
        "kid_over_q99_at_max": {space_name(k, domain): _mci([kid_over_q99(c, k) for c in members]) for k in spaces},
        "at_proxy": proxy_points, "how_at_proxy": at_proxy.get("how", "interpolated"),
        "queries_to_0.9": _plain(at_proxy.get("queries@0.9", (math.nan,) * 3)),
        "queries_to_0.9_seeds": at_proxy.get("queries@0.9_reached", 0),
        "proxy_prob_at_max": _triple(row, "proxy_prob_at_max"),
        "judge_prob_at_max": _triple(row, "judge_prob_at_max"),
        "gap_at_max": _triple(row, "gap_at_max"),
        "controls": paired,
    }


def card_sources(cells: list[dict], model: str) -> list[dict]:
    """Per curve of `model` (not its controls): the card's numbers."""
    groups = group_cells(cells)
    rows = {r["label"]: r for r in summarize(cells)}
    at_proxy = {r["label"]: r for r in equal_proxy_table(cells, PROXY_LEVELS, AT_PROXY)}
    controls = controls_table(groups, CONTROL_METRICS)
    out = []
    for members in groups.values():
        spec = members[0]["spec"]
        if spec["proxy"] != model or is_noise_control(spec):   # the model's own curves, not its controls
            continue
        label = spec["label"]
        out.append(source_numbers(members, rows[label], at_proxy[label],
                                  [c for c in controls if c["treated"] == label]))
    return out


def _fmt(t: list, digits: int = 3) -> str:
    mean, lo, hi = t
    if mean is None:
        return "n/a"
    if lo is None:
        return f"{mean:.{digits}g}"
    return f"{mean:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def headline(model: str, domain: str, sources: list[dict]) -> str:
    """One sentence from the card's numbers: the first source in the battery's order
    whose outputs left the data in the primary feature space, else the first source."""
    if not sources:
        return f"{model} on {domain}: no source of the battery ran."
    primary = get_domain(domain).feature_net
    s = next((s for s in sources if s["departure"].get(primary, {}).get("departed_seeds")), sources[0])
    d = s["departure"][primary]
    at = s["at_proxy"]["0.99"]
    left = (f"outputs leave the data (KID in {primary}'s features beyond its null's q99) at "
            f"{s['knob']} {_fmt(d['level'])} in {d['departed_seeds']} of {d['seeds']} seeds"
            if d["departed_seeds"] else
            f"outputs stay within the data by KID in {primary}'s features up to {s['knob']} {s['max_level']:g}")
    judges = (f"; where the proxy first gives 0.99, the held-out judges give the target {_fmt(at['judge_prob'])}"
              if at.get("judge_prob") and at["judge_prob"][0] is not None else "")
    return f"{model} on {domain}, {s['label']}: {left}{judges} ({INTERVAL_METHOD})."
