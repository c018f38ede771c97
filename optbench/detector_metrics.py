"""Importing this module registers the over-optimization detectors (optbench/detectors.py)
as metrics, so every level of every cell records them. A suite switches them on with

    plugins = ["optbench.detector_metrics"]

(they cost a backward pass and a density evaluation per level, and the first cell of a
proxy fits them: its ensemble replicates and the domain's flow are trained once and
cached). Two metrics per detector:

    det_<name>         share of the outputs above the detector's threshold, the 99th
                       percentile of its scores on held-out real data: 0.01 expected on
                       real data, comparable across proxies, seeds and domains
    det_<name>_score   the detector's mean raw score (its units; for rankings within one
                       proxy)
"""
from __future__ import annotations

from optbench.detectors import CLASS_DETECTORS, DETECTORS, proxy_side
from optbench.referees.metrics import METRICS, Batch, Metric

DOCS = {"energy": "energy -logsumexp(logits)", "max_logit": "minus the largest logit",
        "grad_norm": "input-gradient norm of the proxy's top-class log-probability",
        "mahalanobis": "class-conditional Mahalanobis distance in the proxy's features",
        "disagreement": "std of the agreed class's log-probability over the proxy and 3 replicates",
        "typicality": "|log p(x) - median real log p| under a flow trained on the proxy's data"}

_last: dict = {}


def _scores(batch: Batch) -> dict:
    """Per-sample scores for this batch, computed once for all the detector metrics."""
    if _last.get("batch") is not batch:
        side = proxy_side(batch.domain, batch.proxy, getattr(batch.proxy, "name", ""))
        scores = side.scores(batch.x, batch.proxy_logits)
        _last.clear()
        _last.update(batch=batch, scores=scores, flagged=side.flagged(scores))
    return _last


def _flagged(name: str):
    return lambda batch: _scores(batch)["flagged"][name]


def _mean_score(name: str):
    return lambda batch: float(_scores(batch)["scores"][name].mean())


for _name in DETECTORS:
    kinds = ("classifier",) if _name in CLASS_DETECTORS else ()
    METRICS.register(f"det_{_name}", Metric(
        f"det_{_name}", f"detector: share of outputs flagged by {DOCS[_name]} (1% on held-out real data)",
        compute=_flagged(_name), proxy_kinds=kinds), replace=True)
    METRICS.register(f"det_{_name}_score", Metric(
        f"det_{_name}_score", f"detector: mean {DOCS[_name]}", compute=_mean_score(_name),
        proxy_kinds=kinds), replace=True)


def unregister() -> None:
    """Remove the detector metrics (tests clean up with it)."""
    for name in DETECTORS:
        METRICS.unregister(f"det_{name}")
        METRICS.unregister(f"det_{name}_score")
    _last.clear()
