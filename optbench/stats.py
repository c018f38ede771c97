"""Summary statistics shared by the learned referees' nulls and the exact referees' true
laws (referees/null.py, gold/): numpy only, so the gold package needs nothing above it."""
from __future__ import annotations

import numpy as np


def null_summary(v: np.ndarray, n: int) -> dict:
    """A null distribution's summary over its draws `v` of a statistic at set size `n`:
    mean, std (ddof 1), 1st and 99th percentiles, the number of draws and n."""
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)), "q01": float(np.quantile(v, 0.01)),
            "q99": float(np.quantile(v, 0.99)), "draws": len(v), "n": n}
