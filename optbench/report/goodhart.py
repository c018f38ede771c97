"""Goodhart-law fits per curve: the judge score's rise and fall against the source's own
distance d (sqrt KL for selection), with bootstrap intervals over seeds, and a figure of
proxy and judge against d with the fitted curve and its residuals."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from optbench.pressure import SOURCES
from optbench.report.fits import FORMS, fit_goodhart
from optbench.report.summary import group_cells

POOR_FIT_R2 = 0.9   # below this, the table says the law does not describe the curve
GOLD = "judge_prob"
FIGURE_COLUMNS = 7


def _points(members: list[dict], distance: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(d, metric - metric at the first level) of every seed, pooled; d > 0 and finite."""
    ds, gs = [], []
    for m in members:
        rows = m["curve"]["rows"]
        d = np.array([r[distance] for r in rows], dtype=float)
        g = np.array([r[metric] for r in rows], dtype=float) - rows[0][metric]
        keep = np.isfinite(d) & np.isfinite(g) & (d > 0)
        ds.append(d[keep])
        gs.append(g[keep])
    return np.concatenate(ds), np.concatenate(gs)


def _fit(members, distance, law):
    d, g = _points(members, distance, GOLD)
    if len(d) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fit_goodhart(d, g, law)
        except (RuntimeError, ValueError):   # curve_fit did not converge
            return None


def fit_curves(cells: list[dict], n_boot: int = 400, seed: int = 0) -> list[dict]:
    """One row per curve whose source has a law: a, b, peak d* with 95% percentile
    bootstrap intervals (resampling seeds, refitting the pooled points), R^2 and the
    residuals of the pooled fit."""
    out = []
    rng = np.random.default_rng(seed)
    for key, members in group_cells(cells).items():
        spec = members[0]["spec"]
        source = SOURCES[spec["source"]]
        if not source.law:
            continue
        fit = _fit(members, source.distance, source.law)
        row = {"group": key, "label": spec["label"], "source": spec["source"], "law": source.law,
               "distance": source.distance, "seeds": len(members), "fit": fit}
        if fit is None:
            out.append(row | {"note": "fit did not converge"})
            continue
        boots = []
        for _ in range(n_boot):
            pick = [members[i] for i in rng.integers(0, len(members), len(members))]
            f = _fit(pick, source.distance, source.law)
            if f is not None:
                boots.append((f.a, f.b, f.peak_d))
        boots = np.array(boots) if boots else np.full((1, 3), np.nan)
        for i, name in enumerate(("a", "b", "peak_d")):
            finite = boots[:, i][np.isfinite(boots[:, i])]
            lo, hi = (np.percentile(finite, [2.5, 97.5]) if len(finite) else (math.nan, math.nan))
            row[name], row[name + "_lo"], row[name + "_hi"] = getattr(fit, name), float(lo), float(hi)
        row["r2"] = fit.r2
        row["poor"] = not (fit.r2 >= POOR_FIT_R2)
        out.append(row)
    return out


def _g(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else "inf"


def fits_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["| curve | law | d | a | b | peak d* | R^2 | |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        law = {"bon": "d(a - b d)", "rl": "d(a - b log d)"}[r["law"]]
        if r["fit"] is None:
            lines.append(f"| {r['label']} | {law} | {r['distance']} | | | | | {r['note']} |")
            continue
        cell = lambda k: f"{_g(r[k])} [{_g(r[k + '_lo'])}, {_g(r[k + '_hi'])}]"  # noqa: E731
        verdict = "poor fit: see the residual panel" if r["poor"] else ""
        lines.append(f"| {r['label']} | {law} | {r['distance']} | {cell('a')} | {cell('b')} | "
                     f"{cell('peak_d')} | {r['r2']:.3f} | {verdict} |")
    lines += ["", f"Least-squares fits (scipy) of the judge-ensemble score's change from the first "
              "level, judge(d) - judge(d0), against the source's own distance d (Gao et al. 2022, "
              "eqs. 1-2): sqrt(KL) for selection (for best-of-n an upper bound on the KL), latent "
              "or weight L2 change for the generator sources, pixel L2 for pixel ascent. A "
              "negative b means the judge never turns down within the range: d* is then infinite. "
              f"Brackets: 95% bootstrap over seeds. R^2 < {POOR_FIT_R2} is flagged as a poor fit."]
    return "\n".join(lines) + "\n"


def fits_figure(cells: list[dict], rows: list[dict], out: Path) -> None:
    """Top: proxy and judge against d per seed, with the fitted judge law; bottom: the
    fit's residuals."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = group_cells(cells)
    rows = [r for r in rows if r["fit"] is not None]
    if not rows:
        return
    cols = min(len(rows), FIGURE_COLUMNS)
    blocks = (len(rows) + cols - 1) // cols       # each block: a fit row over a residual row
    fig, axes = plt.subplots(2 * blocks, cols, figsize=(3.6 * cols, 4.4 * blocks), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1.2] * blocks})
    for ax in axes.flat:
        ax.set_visible(False)
    for j, r in enumerate(rows):
        members = groups[r["group"]]
        top, bottom = axes[2 * (j // cols), j % cols], axes[2 * (j // cols) + 1, j % cols]
        top.set_visible(True)
        bottom.set_visible(True)
        for k, m in enumerate(members):
            rs = m["curve"]["rows"]
            d = np.array([x[r["distance"]] for x in rs], dtype=float)
            for metric, color in (("proxy_prob", "tab:blue"), ("judge_prob", "tab:red")):
                top.plot(d, [x[metric] for x in rs], ".", color=color, alpha=0.6, ms=4,
                         label=("proxy" if metric == "proxy_prob" else "judges") if k == 0 else None)
        d, g = _points(members, r["distance"], GOLD)
        base = np.mean([m["curve"]["rows"][0][GOLD] for m in members])
        grid = np.linspace(max(d.min(), 1e-6), d.max(), 200)
        f = FORMS[r["law"]][0]
        top.plot(grid, base + f(grid, r["a"], r["b"]), color="k", lw=1.2,
                 label=f"fit, R^2 {r['r2']:.2f}")
        top.set_title(r["label"], fontsize=8)
        top.set_ylim(-0.03, 1.03)
        top.grid(alpha=0.3)
        top.legend(fontsize=7)
        bottom.axhline(0, color="grey", lw=0.8)
        bottom.plot(d, g - f(d, r["a"], r["b"]), ".", color="tab:red", ms=4)
        bottom.set_xlabel(r["distance"] if r["distance"] != "sqrt_kl" else "sqrt(KL)", fontsize=8)
        bottom.grid(alpha=0.3)
        if j % cols == 0:
            top.set_ylabel("probability")
            bottom.set_ylabel("judge residual")
    fig.suptitle("Goodhart-law fits: the judge score against each source's distance\n"
                 "(dots: seeds; black: least-squares fit)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (4.4 * blocks)))
    fig.savefig(out, dpi=110)
    plt.close(fig)
