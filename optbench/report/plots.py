"""Curve plots: referee metrics against pressure, one line per curve, bands over seeds."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from optbench.report.intervals import INTERVAL_METHOD, mean_ci  # noqa: E402
from optbench.report.summary import departure_threshold, group_cells  # noqa: E402

PANEL_COLUMNS = 5


def curve_panels() -> list[tuple[str, str, str]]:
    """(metric, title, y scale) of every metric in the registry that has a panel
    (optbench/metrics.py): a plug-in metric gets one without editing this file."""
    from optbench.metrics import panels
    return [(m.name, m.panel, m.yscale) for m in panels()]


def _metric(member: dict, metric: str) -> str:
    """'distance' stands for the source's own distance (pixel, latent or weight L2,
    sqrt KL); metrics an older cell lacks read as NaN."""
    return member["spec"].get("distance", "l2") if metric == "distance" else metric


def _band(members: list[dict], metric: str, knob: str):
    levels = [r[knob] for r in members[0]["curve"]["rows"]]
    stats = [mean_ci([m["curve"]["rows"][i].get(_metric(m, metric), np.nan) for m in members])
             for i in range(len(levels))]
    mean, lo, hi = (np.array(v, dtype=float) for v in zip(*stats))
    return np.array(levels, dtype=float), mean, lo, hi


NAN_NOTE = "all NaN: diverged at every level"


def diverged_everywhere(members: list[dict]) -> bool:
    """Every sample of every seed diverged at every level: no metric has a value."""
    return all(r.get("diverged_frac", 0.0) >= 1.0 for m in members for r in m["curve"]["rows"])


def _all_nan(members: list[dict], metric: str) -> bool:
    """The curve measured `metric` (older or other-domain cells may not) and it is NaN
    at every level of every seed."""
    values = [r.get(_metric(m, metric)) for m in members for r in m["curve"]["rows"]]
    return None not in values and not np.isfinite(np.array(values, dtype=float)).any()


def _draw_curve(ax, members: list[dict], metric: str, knob: str, style: dict) -> tuple[bool, bool]:
    """One curve's band on one panel, with its baseline and (KID) its departure threshold;
    whether it drew any finite value, and a positive one (a log axis needs one)."""
    x, mean, lo, hi = _band(members, metric, knob)
    ax.plot(x, mean, marker=".", ms=4, **style)
    ax.fill_between(x, lo, hi, color=style["color"], alpha=0.2, lw=0)
    lines = []
    base = [m["curve"]["baseline"].get(metric) for m in members]
    if metric != "distance" and None not in base:
        lines.append((np.mean(base), dict(ls=":", lw=1)))
    if metric == "kid":
        thr = np.mean([departure_threshold(m["curve"], "kid") for m in members])
        lines.append((thr, dict(ls="--", lw=0.8, alpha=0.7)))
    lines = [(y, kw) for y, kw in lines if np.isfinite(y)]   # no line for a NaN baseline
    for y, kw in lines:
        ax.axhline(y, color=style["color"], **kw)
    values = np.concatenate([mean, lo, hi, [y for y, _ in lines]])
    return bool(np.isfinite(mean).any()), bool((np.isfinite(values) & (values > 0)).any())


def _finish_panel(ax, name: str, yscale: str, knob: str, drawn: tuple[bool, bool],
                  nan_curves: list[tuple[str, bool]], last_level: float) -> None:
    """Axes, title and, for curves with no value on this panel, a note naming them.
    `drawn`: whether any curve drew a finite value, and a positive one."""
    finite, positive = drawn
    ax.set_xscale("symlog", linthresh=1)  # log axis that still shows level 0
    ax.set_xlim(left=0)
    if not finite:   # nothing for autoscaling to go by: keep the levels in view
        ax.set_xlim(0, last_level or 1)
    if yscale == "symlog":  # KID is unbiased, so it can be slightly negative
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_ylim(bottom=-0.02)
    elif yscale != "log" or positive:   # a log axis with nothing positive cannot be drawn
        ax.set_yscale(yscale)
    for diverged in (True, False):
        names = [n if len(n) <= 40 else n[:39] + "…" for n, d in nan_curves if d == diverged]
        if names:
            note = f"{NAN_NOTE if diverged else 'all NaN'}:\n" + ", ".join(names)
            ax.text(0.5, 0.7 if diverged else 0.3, note, transform=ax.transAxes, ha="center",
                    va="center", fontsize=7, color="0.35", wrap=True)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel(knob)
    ax.grid(alpha=0.3)


def curves_figure(cells: list[dict], out: Path, title: str = "") -> None:
    groups = list(group_cells(cells).values())
    knob = groups[0][0]["spec"]["knob"]
    panels = curve_panels()
    rows = -(-len(panels) // PANEL_COLUMNS)
    fig, axes = plt.subplots(rows, PANEL_COLUMNS, figsize=(20, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = [(False, False)] * len(panels)
    nan_curves: list[list[tuple[str, bool]]] = [[] for _ in panels]
    for g, members in enumerate(groups):
        name = members[0]["spec"]["label"]
        blown = diverged_everywhere(members)
        style = dict(color=colors[g % len(colors)],
                     label=f"{name} ({len(members)} seeds)" + (f"; {NAN_NOTE}" if blown else ""))
        for i, (ax, (metric, _, _)) in enumerate(zip(axes.flat, panels)):
            drawn[i] = tuple(a or b for a, b in zip(drawn[i], _draw_curve(ax, members, metric, knob, style)))
            if _all_nan(members, metric):
                nan_curves[i].append((name, blown))
    last_level = max(float(r[knob]) for c in cells for r in c["curve"]["rows"])
    for i, (ax, (_, name, yscale)) in enumerate(zip(axes.flat, panels)):
        _finish_panel(ax, name, yscale, knob, drawn[i], nan_curves[i], last_level)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8,
               frameon=False)
    fig.suptitle(title + f"\nlines: mean over seeds; bands: {INTERVAL_METHOD}; dotted: real-vs-real "
                 "baseline; dashed (KID): its real-against-real null q99 (departure threshold)", fontsize=10)
    rows_of_legend = (len(labels) + 4) // 5
    fig.tight_layout(rect=(0, 0.035 * rows_of_legend, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _mean_curve(members: list[dict], metric: str) -> np.ndarray:
    with warnings.catch_warnings():   # a level where every seed is NaN stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean([[r.get(metric, np.nan) for r in m["curve"]["rows"]] for m in members], axis=0)


def equal_proxy_figure(cells: list[dict], out: Path, title: str = "") -> None:
    """Referee metrics against the proxy probability reached: methods compared at equal
    proxy score. One line per curve (mean over seeds), points in order of pressure."""
    groups = list(group_cells(cells).values())
    legend_rows = (len(groups) + 3) // 4
    panels = equal_proxy_panels(4)   # the registry's first four headline metrics
    fig, axes = plt.subplots(1, len(panels), figsize=(19, 4.8 + 0.25 * legend_rows), squeeze=False)
    axes = axes[0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = "os^Dv<>Ph*"
    for g, members in enumerate(groups):
        spec = members[0]["spec"]
        x = _mean_curve(members, "proxy_prob")
        style = dict(color=colors[g % len(colors)], marker=markers[g % len(markers)], ms=4, lw=1.3,
                     label=f"{spec['label']} ({spec['knob']} {members[0]['curve']['rows'][0][spec['knob']]:g}"
                           f"..{members[0]['curve']['rows'][-1][spec['knob']]:g})")
        for ax, (metric, _, _) in zip(axes, panels):
            ax.plot(x, _mean_curve(members, metric), **style)
    for ax, (_, name, yscale) in zip(axes, panels):
        ax.set_xlabel("proxy: target probability reached")
        ax.set_title(name, fontsize=10)
        if yscale == "symlog":
            ax.set_yscale("symlog", linthresh=1e-2)
            ax.set_ylim(bottom=-0.02)
        ax.grid(alpha=0.3)
    axes[1].plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")  # judge agrees with proxy
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title or "methods at equal proxy score (mean over seeds; dashed: judge = proxy)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.055 * legend_rows, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


EVERY_ROW = "every"   # a source's figure_row: drawn in every row as the reference (guidance)
# Cells written before spec.json recorded their source's figure_row: the rows then shared.
OLD_FIGURE_ROWS = {"online_pixel_ascent": "pixel_ascent", "quantilizer": "best_of_n", "guidance": EVERY_ROW}


def figure_row(spec: dict) -> str:
    """A cell's row of the equal-proxy figure: its source's `figure_row` (spec.json)."""
    return spec.get("figure_row") or OLD_FIGURE_ROWS.get(spec["source"], spec["source"])
EQUAL_PROXY_COLUMNS = 3   # the headline figure's columns: the first headline metrics


def equal_proxy_panels(columns: int = EQUAL_PROXY_COLUMNS) -> list[tuple[str, str, str]]:
    """(metric, title, y scale) of the first `columns` headline metrics of the registry
    (optbench/metrics.py), titled as in the curves figure."""
    from optbench.metrics import METRICS, headline_metrics
    return [(m, METRICS[m].panel or m, METRICS[m].yscale) for m in headline_metrics()[:columns]]


def equal_proxy_by_source(cells: list[dict], out: Path, title: str = "") -> None:
    """The headline figure: one row per iterative or selection source (a variant shares
    its parent's: the source's `figure_row`), one column per referee metric, against the
    proxy probability reached. Colours follow the proxy, so a variant has one colour in
    every row; a reference source (figure_row "every": guidance, which has no proxy
    variants) is drawn in black in every row."""
    groups = list(group_cells(cells).values())
    row_of = lambda g: figure_row(g[0]["spec"])  # noqa: E731
    reference = [g for g in groups if row_of(g) == EVERY_ROW]
    sources = list(dict.fromkeys(row_of(g) for g in groups if row_of(g) != EVERY_ROW))
    proxies = list(dict.fromkeys(g[0]["spec"]["proxy"] for g in groups))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    panels = equal_proxy_panels()
    fig, axes = plt.subplots(len(sources), len(panels),
                             figsize=(5.2 * len(panels), 3.6 * len(sources)), squeeze=False)
    for i, source in enumerate(sources):
        members_of = [g for g in groups if row_of(g) == source]
        styles = ["-", "--", ":", "-."]
        seen_proxy: dict[str, int] = {}
        for members in members_of + reference:
            spec = members[0]["spec"]
            if row_of(members) == EVERY_ROW:
                style = dict(color="k", lw=1.6, ls="-", label=f"{spec['label']} ({spec['source']})")
            else:
                k = seen_proxy.setdefault(spec["proxy"], 0)
                seen_proxy[spec["proxy"]] += 1
                short = spec["label"].split(" [")[0]
                name = spec["proxy"] if short == members_of[0][0]["spec"]["label"].split(" [")[0] else f"{short} ({spec['proxy']})"
                style = dict(color=colors[proxies.index(spec["proxy"]) % len(colors)], lw=1.3,
                             ls=styles[k % len(styles)], label=name)
            x = _mean_curve(members, "proxy_prob")
            for ax, (metric, _, _) in zip(axes[i], panels):
                ax.plot(x, _mean_curve(members, metric), marker=".", ms=3, **style)
        for j, (metric, name, yscale) in enumerate(panels):
            ax = axes[i, j]
            ax.set_title(f"{source}: {name}", fontsize=9)
            if yscale == "symlog":
                ax.set_yscale("symlog", linthresh=1e-2)
                ax.set_ylim(bottom=-0.02)
            if metric == "judge_prob":
                ax.plot([0, 1], [0, 1], color="grey", lw=0.7, ls="--")
            ax.set_xlim(0, 1.02)
            ax.grid(alpha=0.3)
            if i == len(sources) - 1:
                ax.set_xlabel("proxy probability reached")
        axes[i, -1].legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(title or "referee metrics at equal proxy score (mean over seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))   # room for the title
    fig.savefig(out, dpi=100)
    plt.close(fig)


EQUAL_COMPUTE_PANELS = [("proxy_prob", "proxy: target probability", "linear"),
                        ("kid", "KID to reference (symlog)", "symlog"),
                        ("judge_prob", "judges: target probability", "linear")]


def equal_compute_figure(cells: list[dict], out: Path, title: str = "") -> bool:
    """Proxy score and referee metrics against the proxy forward passes spent per sample
    (log x): sources compared at equal proxy compute. Colour follows the curve's label,
    line style its proxy. Curves without query counts, or that spend none (CFG, the
    matched-noise control), are left out. False when no curve has counts."""
    groups = [g for g in group_cells(cells).values()
              if (_mean_curve(g, "proxy_forward") > 0).any()]     # NaN (no counts) compares False
    if not groups:
        return False
    groups.sort(key=lambda g: (g[0]["spec"]["label"].split(" [")[0], g[0]["spec"]["proxy"]))
    labels = list(dict.fromkeys(g[0]["spec"]["label"].split(" [")[0] for g in groups))
    proxies = list(dict.fromkeys(g[0]["spec"]["proxy"] for g in groups))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(EQUAL_COMPUTE_PANELS), figsize=(5.4 * len(EQUAL_COMPUTE_PANELS), 4.6))
    for members in groups:
        spec = members[0]["spec"]
        short = spec["label"].split(" [")[0]
        x = _mean_curve(members, "proxy_forward")
        keep = x > 0     # a log axis: the start (no queries yet) is each curve's first level
        style = dict(color=colors[labels.index(short) % len(colors)], ls=styles[proxies.index(spec["proxy"]) % 4],
                     marker=".", ms=3, lw=1.2, label=f"{short} ({spec['proxy']})")
        for ax, (metric, _, _) in zip(axes, EQUAL_COMPUTE_PANELS):
            ax.plot(x[keep], _mean_curve(members, metric)[keep], **style)
    for ax, (metric, name, yscale) in zip(axes, EQUAL_COMPUTE_PANELS):
        ax.set_xscale("log")
        if yscale == "symlog":
            ax.set_yscale("symlog", linthresh=1e-2)
            ax.set_ylim(bottom=-0.02)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("proxy forward passes per sample")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(title or "sources at equal proxy compute (mean over seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True
