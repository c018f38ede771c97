"""Goodhart-law fits per curve: the judge score's rise and fall against the source's own
distance d (sqrt KL for selection), with percentile-bootstrap intervals over seeds
(refitting each resample; a fit without a peak has d* = inf), and a figure of
proxy and judge against d with the fitted curve and its residuals."""
from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from optbench.report.fits import FORMS, fit_goodhart
from optbench.report.summary import group_cells
from optbench.text import md_text

POOR_FIT_R2 = 0.9   # below this, the table says the law does not describe the curve
FITTED = "judge_prob"   # the fitted true-reward stand-in: the judges, not the exact gold (gold_*)
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
    d, g = _points(members, distance, FITTED)
    if len(d) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fit_goodhart(d, g, law)
        except (RuntimeError, ValueError):   # curve_fit did not converge
            return None


def percentile_interval(values, weights=None, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values (each with a probability weight) that may
    be +inf (a refit without a peak). The empirical quantile, without interpolation,
    keeps an infinite value infinite: the upper end is inf as soon as more than
    (1 - confidence) / 2 of the weight is."""
    v = np.asarray(values, dtype=float)
    w = np.ones(len(v)) if weights is None else np.asarray(weights, dtype=float)
    keep = ~np.isnan(v)
    v, w = v[keep], w[keep]
    if len(v) == 0:
        return math.nan, math.nan
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(w[order]) / w.sum()
    tail = (1 - confidence) / 2
    # the first value whose cumulative weight reaches q (1e-12 absorbs rounding of the sum)
    lo, hi = (v[np.searchsorted(cum, q - 1e-12)] for q in (tail, 1 - tail))
    return float(lo), float(hi)


def seed_resamples(n_seeds: int, n_boot: int, rng: np.random.Generator):
    """Bootstrap resamples of the seeds as (indices, probability). When there are at most
    n_boot distinct ones (C(2S - 1, S): 10 for 3 seeds, 126 for 5), every one of them
    with its multinomial probability: the exact bootstrap distribution, with no Monte
    Carlo noise deciding whether a 1-in-27 resample tips a bound. Otherwise n_boot
    random resamples of weight 1 / n_boot."""
    if math.comb(2 * n_seeds - 1, n_seeds) <= n_boot:
        for pick in itertools.combinations_with_replacement(range(n_seeds), n_seeds):
            ways = math.factorial(n_seeds)
            for count in Counter(pick).values():
                ways //= math.factorial(count)
            yield list(pick), ways / n_seeds ** n_seeds
    else:
        for _ in range(n_boot):
            yield list(rng.integers(0, n_seeds, n_seeds)), 1 / n_boot


# spec.json's "law" before it was "goodhart_law" (results folders written until then)
OLD_LAW_NAMES = {"rl": "rl_kl", "bon": "best_of_n", "": None}


def source_law(spec: dict) -> tuple[str | None, str]:
    """(Goodhart-law form or None, distance) of a cell's source: from its spec.json
    ("goodhart_law"; older folders: "law"), or for cells written before specs held the
    law, from the source registry (a plug-in source that is not loaded here then gets
    no fit rather than an error)."""
    if "goodhart_law" in spec:
        return spec["goodhart_law"], spec.get("distance", "l2")
    if "law" in spec:
        return OLD_LAW_NAMES.get(spec["law"], spec["law"]), spec.get("distance", "l2")
    from optbench.pressure import SOURCES
    source = SOURCES.get(spec["source"])
    return (source.goodhart_law, source.distance) if source else (None, "")


def fit_curves(cells: list[dict], n_boot: int = 400, seed: int = 0) -> list[dict]:
    """One row per curve whose source has a law: a, b, peak d* with 95% percentile
    bootstrap intervals (resampling seeds, refitting the pooled points; every distinct
    resample when there are at most n_boot), R^2 and the residuals of the pooled fit.
    A fit with b <= 0 never turns down: its peak is +inf, and such refits stay in the
    bootstrap, so the interval's upper end can be inf."""
    out = []
    rng = np.random.default_rng(seed)
    for key, members in group_cells(cells).items():
        spec = members[0]["spec"]
        law, distance = source_law(spec)
        if not law:
            continue
        fit = _fit(members, distance, law)
        row = {"group": key, "label": spec["label"], "source": spec["source"], "law": law,
               "distance": distance, "seeds": len(members), "fit": fit, "n_boot": n_boot}
        if fit is None:
            out.append(row | {"note": "fit did not converge"})
            continue
        boots, probs = [], []
        for pick, p in seed_resamples(len(members), n_boot, rng):
            f = _fit([members[i] for i in pick], distance, law)
            if f is not None:   # a refit that did not converge has no a, b or peak
                boots.append((f.a, f.b, f.peak_d))
                probs.append(p)
        boots = np.array(boots) if boots else np.full((0, 3), np.nan)
        for i, name in enumerate(("a", "b", "peak_d")):
            lo, hi = percentile_interval(boots[:, i], probs)
            row[name], row[name + "_lo"], row[name + "_hi"] = getattr(fit, name), lo, hi
        row["boot_fits"] = len(boots)
        row["boot_exact"] = math.comb(2 * len(members) - 1, len(members)) <= n_boot
        row["no_peak_share"] = (float(np.dot(np.isinf(boots[:, 2]), probs) / sum(probs))
                                if probs else math.nan)
        row["r2"] = fit.r2
        row["poor"] = not (fit.r2 >= POOR_FIT_R2)
        out.append(row)
    return out


def _g(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else "n/a")


def peak_text(peak: float, lo: float, hi: float, no_peak_share: float = 0.0) -> str:
    """The peak d* and its interval, saying 'unbounded' where the judge never turns down:
    '4.1 [3.2, 5.6]', '4.1 [3.2, unbounded)', 'unbounded (> 3.2)' or 'unbounded'."""
    share = f"; no peak in {no_peak_share:.0%} of resamples" if no_peak_share > 0 else ""
    if math.isinf(peak) and peak > 0:
        return "unbounded" + (f" (> {_g(lo)}{share})" if math.isfinite(lo) else "")
    if math.isinf(hi) and hi > 0:
        return f"{_g(peak)} [{_g(lo)}, unbounded){share}"
    return f"{_g(peak)} [{_g(lo)}, {_g(hi)}]{share}"


def boot_method(rows: list[dict]) -> str:
    """How the intervals were made, e.g. 'percentile bootstrap over seeds, refitting: 3
    seeds, all 10 distinct resamples with their probabilities (exact)'."""
    parts = []
    for seeds in sorted({r["seeds"] for r in rows}):
        distinct = math.comb(2 * seeds - 1, seeds)
        n_boot = max(r.get("n_boot", 0) for r in rows if r["seeds"] == seeds)
        parts.append(f"{seeds} seeds, all {distinct} distinct resamples with their probabilities "
                     "(exact)" if distinct <= n_boot else
                     f"{seeds} seeds, {n_boot} random resamples (of {distinct} distinct)")
    return "percentile bootstrap over seeds, refitting: " + "; ".join(parts)


def fits_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["| curve | law | d | a | b | peak d* | R^2 | |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        law = {"best_of_n": "d(a - b d)", "rl_kl": "d(a - b log d)"}[r["law"]]
        if r["fit"] is None:
            lines.append(f"| {md_text(r['label'])} | {law} | {r['distance']} | | | | | {r['note']} |")
            continue
        cell = lambda k: f"{_g(r[k])} [{_g(r[k + '_lo'])}, {_g(r[k + '_hi'])}]"  # noqa: E731
        peak = peak_text(r["peak_d"], r["peak_d_lo"], r["peak_d_hi"], r.get("no_peak_share", 0.0))
        verdict = "poor fit: see the residual panel" if r["poor"] else ""
        lines.append(f"| {md_text(r['label'])} | {law} | {r['distance']} | {cell('a')} | {cell('b')} | "
                     f"{peak} | {r['r2']:.3f} | {verdict} |")
    lines += ["", f"Least-squares fits (scipy) of the judge-ensemble score's change from the first "
              "level, judge(d) - judge(d0), against the source's own distance d (Gao et al. 2022, "
              "eqs. 1-2): sqrt(KL) for selection (for best-of-n an upper bound on the KL), latent "
              "or weight L2 change for the generator sources, pixel L2 for pixel ascent. "
              "b <= 0 means the judge never turns down: there is no peak, d* is 'unbounded'. "
              f"Brackets: 95% {boot_method(rows)}. Refits without a peak count as d* = inf, so an "
              "upper end is 'unbounded' when they carry more than 2.5% of the resampling "
              "probability. "
              f"R^2 < {POOR_FIT_R2} is flagged as a poor fit."]
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
        d, g = _points(members, r["distance"], FITTED)
        base = np.mean([m["curve"]["rows"][0][FITTED] for m in members])
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
