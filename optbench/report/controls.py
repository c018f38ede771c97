"""Controls: how much of a curve's departure the proxy is responsible for.

Adam moves every pixel by about lr per step whatever the gradient's size, so a referee
metric that rises under pixel ascent may be the optimizer's doing, not the proxy's.
Each suite can carry two controls, found here by rule:

- an *untrained proxy* (its manifest recipe has role "control"): the same architecture
  at its initial weights, pushed with the same source and settings;
- *matched noise* (`optimizer = "random_sign"`): steps of the same per-pixel size with
  random signs, no proxy at all.

The *pressure-attributable departure* of a metric is its value on the treated curve
minus the control's, paired by seed (the same seed has the same start samples and
targets), at the same step and, separately, at the same mean L2 distance from the start
(the control's curve linearly interpolated in L2; NaN beyond the control's reach).
Intervals are Student-t over the paired differences."""
from __future__ import annotations

import json
import math

import numpy as np

from optbench.metrics import headline_metrics
from optbench.models.checkpoints import catalog
from optbench.errors import CheckpointError
from optbench.report.intervals import mean_ci
from optbench.report.summary import _fmt
from optbench.text import md_text

CONTROLS_NOTE = ("Each treated curve minus a control, paired by seed (same start samples and "
                 "targets): an untrained proxy of the same architecture pushed the same way, or "
                 "matched noise (random-sign steps of lr per pixel, no proxy). 'Same step' "
                 "compares the two at one step; 'same L2' reads the control at the treated "
                 "curve's mean L2 distance from the start (linear between its levels; n/a beyond "
                 "its reach). Brackets: Student-t 95% interval over the paired differences.")


def is_untrained_control(spec: dict) -> bool:
    try:
        entry = catalog(spec["domain"]).get(spec["proxy"], {})
    except (CheckpointError, ValueError):   # a plug-in domain not loaded here
        entry = {}
    return "control" in (entry.get("role"), (entry.get("recipe") or {}).get("role"))


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


def controls_table(groups: dict[str, list[dict]], metrics: tuple[str, ...] | None = None) -> list[dict]:
    """Each treated curve against its control on `metrics` (default: the registry's
    headline metrics)."""
    metrics = metrics or headline_metrics()
    return [{"kind": kind, "treated": t[0]["spec"]["label"], "control": c[0]["spec"]["label"],
             "knob": t[0]["spec"]["knob"],
             "metrics": {m: attributable(t, c, m) for m in metrics}}
            for kind, t, c in control_pairs(groups)]


def _f(v: tuple[float, float, float]) -> str:
    return _fmt(*v)


def controls_markdown(rows: list[dict], metrics: tuple[str, ...] | None = None) -> str:
    """One table per (treated curve, control): per level, the treated value and the
    pressure-attributable difference at the same step and at the same L2 (`metrics`:
    the registry's first two headline metrics by default)."""
    metrics = metrics or headline_metrics()[:2]
    lines = []
    for r in rows:
        knob = r["knob"]
        for m in metrics:
            points = r["metrics"].get(m, [])
            if not points:
                continue
            lines += [f"**{md_text(r['treated'])}** minus **{md_text(r['control'])}** ({r['kind']}), `{m}`, "
                      f"{points[0]['seeds']} paired seeds:", "",
                      f"| {knob} | mean L2 | {m} | minus control at the same {knob} | minus control at the same L2 |",
                      "|---|---|---|---|---|"]
            for p in points:
                lines.append(f"| {p[knob]:g} | {_f(p['l2'])} | {_f(p['treated'])} | {_f(p['same_step'])} | "
                             f"{_f(p['same_l2'])} |")
            lines.append("")
    return "\n".join(lines)


def controls_figure(groups: dict[str, list[dict]], out, metric: str = "kid") -> None:
    """For each treated curve with controls: the metric against the step and against the
    mean L2 distance, treated and controls, mean over seeds with Student-t bands."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pairs = control_pairs(groups)
    treated_curves = []
    for _, t, _c in pairs:
        if all(t is not u for u in treated_curves):
            treated_curves.append(t)
    if not treated_curves:
        return
    fig, axes = plt.subplots(len(treated_curves), 2, figsize=(10, 3.4 * len(treated_curves)), squeeze=False)
    for row, t in zip(axes, treated_curves):
        curves = [("treated", t)] + [(kind, c) for kind, tt, c in pairs if tt is t]
        for kind, cells in curves:
            knob = cells[0]["spec"]["knob"]
            n_levels = min(len(c["curve"]["rows"]) for c in cells)
            for ax, x_of in ((row[0], lambda r: max(r[knob], 0.5)), (row[1], lambda r: r["l2"])):
                xs = [np.mean([x_of(c["curve"]["rows"][i]) for c in cells]) for i in range(n_levels)]
                stats = [mean_ci([c["curve"]["rows"][i].get(metric, math.nan) for c in cells]) for i in range(n_levels)]
                mean = np.array([s[0] for s in stats])
                ax.plot(xs, mean, marker="o", ms=3, label=f"{cells[0]['spec']['label']} ({kind})")
                lo = np.array([s[1] for s in stats])
                hi = np.array([s[2] for s in stats])
                ok = np.isfinite(lo) & np.isfinite(hi)
                ax.fill_between(np.array(xs)[ok], lo[ok], hi[ok], alpha=0.2)
        row[0].set_xscale("log", base=2)
        row[0].set_xlabel(f"{knob} (0 drawn at 0.5)")
        row[1].set_xlabel("mean L2 distance from the start")
        for ax in row:
            ax.set_yscale("symlog", linthresh=0.01)
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.suptitle(f"{metric}: treated curves and their controls (mean over seeds, Student-t 95% bands)")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))   # leave the title its own space
    fig.savefig(out, dpi=110)
    plt.close(fig)
