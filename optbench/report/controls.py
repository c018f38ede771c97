"""Controls: how much of a curve's departure the proxy is responsible for.

Adam moves every pixel by about lr per step whatever the gradient's size, so a referee
metric that rises under pixel ascent may be the optimizer's doing, not the proxy's.
Each suite can carry two controls, found here by rule:

- an *untrained proxy* (its manifest recipe has role "control"): the same architecture
  at its initial weights, pushed with the same source and settings;
- *matched noise* (`optimizer = "random_sign"`): steps of the same per-pixel size with
  random signs, no proxy at all.

The *pressure-attributable departure* of a metric is its value on the treated curve
minus the control's, paired by seed (the same seed has the same start digits and
targets), at the same step and, separately, at the same mean L2 distance from the start
(the control's curve linearly interpolated in L2; NaN beyond the control's reach).
Intervals are Student-t over the paired differences."""
from __future__ import annotations

import json
import math

import numpy as np

from optbench.models.checkpoints import read_manifest
from optbench.report.intervals import mean_ci

CONTROL_METRICS = ("kid", "judge_prob", "c2st", "precision")


def is_untrained_control(spec: dict) -> bool:
    entry = read_manifest(spec["domain"])["models"].get(spec["proxy"], {})
    return (entry.get("recipe") or {}).get("role") == "control"


def is_noise_control(spec: dict) -> bool:
    return spec["settings"].get("optimizer") == "random_sign"


def _shared(spec: dict, drop: tuple[str, ...]) -> str:
    s = {k: v for k, v in spec["settings"].items() if k not in drop}
    return json.dumps({"domain": spec["domain"], "source": spec["source"], "n_samples": spec["n_samples"],
                       "settings": s}, sort_keys=True)


def control_pairs(groups: dict[str, list[dict]]) -> list[tuple[str, list[dict], list[dict]]]:
    """(kind, treated cells, control cells) for every treated curve and each control
    that matches it: an untrained proxy with equal settings (and proxy training), or
    matched noise with equal settings but the optimizer."""
    curves = list(groups.values())
    pairs = []
    for treated in curves:
        t = treated[0]["spec"]
        if is_untrained_control(t) or is_noise_control(t):
            continue
        for control in curves:
            c = control[0]["spec"]
            if is_untrained_control(c) and _shared(c, ()) == _shared(t, ()) \
                    and c.get("proxy_training", "shipped") == t.get("proxy_training", "shipped"):
                pairs.append(("untrained proxy", treated, control))
            elif is_noise_control(c) and _shared(c, ("optimizer",)) == _shared(t, ("optimizer",)):
                pairs.append(("matched noise", treated, control))
    return pairs


def _by_seed(cells: list[dict]) -> dict[int, list[dict]]:
    return {c["spec"]["seed"]: c["curve"]["rows"] for c in cells}


def _at_l2(rows: list[dict], l2: float, metric: str) -> float:
    """The control's metric at mean L2 distance `l2`, linear between its levels; NaN
    outside the L2 range its curve covers."""
    d = np.array([r["l2"] for r in rows], dtype=float)
    v = np.array([r.get(metric, math.nan) for r in rows], dtype=float)
    ok = np.isfinite(d) & np.isfinite(v)
    d, v = d[ok], v[ok]
    if len(d) < 2 or not d.min() <= l2 <= d.max():
        return math.nan
    order = np.argsort(d, kind="stable")
    return float(np.interp(l2, d[order], v[order]))


def attributable(treated: list[dict], control: list[dict], metric: str) -> list[dict]:
    """Per level of the treated curve: treated - control at the same step and at the
    same L2, each (mean, lo, hi) over the seeds both curves have."""
    knob = treated[0]["spec"]["knob"]
    t_rows, c_rows = _by_seed(treated), _by_seed(control)
    seeds = sorted(set(t_rows) & set(c_rows))
    out = []
    for i, row in enumerate(t_rows[seeds[0]] if seeds else []):
        same_step, same_l2 = [], []
        for s in seeds:
            t, c = t_rows[s][i], c_rows[s][i] if i < len(c_rows[s]) else None
            if c is not None and c[knob] == t[knob]:
                same_step.append(t.get(metric, math.nan) - c.get(metric, math.nan))
            same_l2.append(t.get(metric, math.nan) - _at_l2(c_rows[s], t["l2"], metric))
        out.append({knob: row[knob], "seeds": len(seeds),
                    "treated": mean_ci([t_rows[s][i].get(metric, math.nan) for s in seeds]),
                    "same_step": mean_ci(same_step), "same_l2": mean_ci(same_l2),
                    "l2": mean_ci([t_rows[s][i]["l2"] for s in seeds])})
    return out


def controls_table(groups: dict[str, list[dict]], metrics=CONTROL_METRICS) -> list[dict]:
    return [{"kind": kind, "treated": t[0]["spec"]["label"], "control": c[0]["spec"]["label"],
             "knob": t[0]["spec"]["knob"],
             "metrics": {m: attributable(t, c, m) for m in metrics}}
            for kind, t, c in control_pairs(groups)]
