"""Goodhart-law fits (Gao, Schulman and Hilton 2022, eqs. 1-2), by least squares (scipy):
    best-of-n:          gold(d) = d (a - b d)         peak at d* = a / (2 b)
    iterative sources:  gold(d) = d (a - b log d)     peak at d* = exp(a / b - 1)
with d = sqrt(KL) for best-of-n, or the source's own distance."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit

def _rl_peak(a: float, b: float) -> float:
    """exp(a / b - 1); infinite when b <= 0 (no peak) or when it overflows (b tiny)."""
    if b <= 0 or a / b - 1 > 700:   # exp(709) is the largest finite double
        return math.inf
    return math.exp(a / b - 1)


# By a source's `goodhart_law` (pressure/source.py): selection, and optimization
# against the proxy (Gao et al.'s RL form, d = sqrt(KL) there).
FORMS = {
    "best_of_n": (lambda d, a, b: d * (a - b * d), lambda a, b: a / (2 * b) if b > 0 else math.inf),
    "rl_kl": (lambda d, a, b: d * (a - b * np.log(d)), _rl_peak),
}


@dataclass(frozen=True)
class GoodhartFit:
    form: str
    a: float
    b: float
    peak_d: float
    r2: float
    residuals: tuple[float, ...]


def fit_goodhart(d, gold, form: str) -> GoodhartFit:
    """Fit gold - gold(d=0) against d > 0 (the laws pass through the origin)."""
    if form not in FORMS:
        raise ValueError(f"form: unknown value {form!r}; allowed: {', '.join(FORMS)}")
    f, peak = FORMS[form]
    d, gold = np.asarray(d, dtype=float), np.asarray(gold, dtype=float)
    keep = d > 0
    d, gold = d[keep], gold[keep]
    (a, b), _ = curve_fit(f, d, gold, p0=(1.0, 0.1))
    res = gold - f(d, a, b)
    ss_tot = float(((gold - gold.mean()) ** 2).sum())
    r2 = 1 - float((res ** 2).sum()) / ss_tot if ss_tot > 0 else math.nan
    return GoodhartFit(form, float(a), float(b), float(peak(a, b)), r2, tuple(map(float, res)))
