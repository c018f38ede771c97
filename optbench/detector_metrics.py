"""Importing this module registers the over-optimization detectors (optbench/detectors.py)
as metrics, so every level of every cell records them. A suite switches them on with

    plugins = ["optbench.detector_metrics"]

(they cost a backward pass and a density evaluation per level, and the first cell of a
proxy fits them: its ensemble replicates and the domain's flow are trained once and
cached). Two metrics per detector:

    det_<name>         share of the outputs above the detector's threshold, calibrated
                       on m held-out real examples to flag 1% of fresh real data on
                       average: comparable across proxies, seeds and domains; its null
                       is BetaBinomial(n, m + 1 - k, k) / n (metrics.binomial_null: the
                       calibrated threshold's own error included), recorded with the
                       cell's nulls
    det_<name>_score   the detector's mean raw score (its units; for rankings within one
                       proxy)

Both are per-sample metrics (optbench/metrics.py), so a selection source's level reads
them as exact weighted means over its pool, like every other per-sample metric.
"""
from __future__ import annotations

import math

import torch

from optbench.detectors import CLASS_DETECTORS, DETECTORS, FLAG_RATE, calibration_size, proxy_side
from optbench.metrics import METRICS, Metric

DOCS = {"energy": "energy -logsumexp(logits)", "max_logit": "minus the largest logit",
        "grad_norm": "input-gradient norm of the proxy's top-class log-probability",
        "mahalanobis": "class-conditional Mahalanobis distance in the proxy's features",
        "disagreement": "std of the agreed class's log-probability over the proxy and 3 replicates",
        "typicality": "|log p(x) - median real log p| under a flow trained on the proxy's data"}
VERSION = 2   # bump when a detector's scores or its calibration change


def _scores(batch) -> dict:
    """Per-sample scores and flags of every detector for this batch, computed once."""
    def compute():
        side = proxy_side(batch.domain, batch.proxy, getattr(batch.proxy, "name", ""))
        scores = side.scores(batch.x, batch.proxy_logits)
        return {"scores": scores, "flagged": {k: (v > side.thresholds[k]).double() if math.isfinite(side.thresholds[k])
                                              else torch.full_like(v, math.nan) for k, v in scores.items()}}
    return batch.memo("detectors", compute)


def _flagged(name: str):
    return lambda batch: _scores(batch)["flagged"][name]


def _score(name: str):
    return lambda batch: _scores(batch)["scores"][name]


def register() -> None:
    """Register the detector metrics (importing this module does; `optbench list`
    registers them to list them, then removes them)."""
    for name in DETECTORS:
        kinds = ("classifier",) if name in CLASS_DETECTORS else ()
        METRICS.register(f"det_{name}", Metric(
            f"det_{name}", f"detector: share of outputs flagged by {DOCS[name]} (1% on held-out real data)",
            compute=_flagged(name), proxy_kinds=kinds, kind="sample", departs="high", null="binomial",
            null_rate=FLAG_RATE, calibration=calibration_size, role="detector", version=VERSION), replace=True)
        METRICS.register(f"det_{name}_score", Metric(
            f"det_{name}_score", f"detector: mean {DOCS[name]}", compute=_score(name),
            proxy_kinds=kinds, kind="sample", role="diagnostic", version=VERSION), replace=True)


register()


def unregister() -> None:
    """Remove the detector metrics (tests clean up with it)."""
    for name in DETECTORS:
        METRICS.unregister(f"det_{name}")
        METRICS.unregister(f"det_{name}_score")
