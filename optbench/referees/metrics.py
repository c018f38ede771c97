"""The metric registry: every number a referee reports, with what plots and summaries
need to show it. Plots draw one panel per metric with a `panel` title, and summaries add
a column for each metric with `at_max`, so a new metric appears without editing them.

The referee computes the built-in metrics itself (`compute` is None). A plug-in adds its
own with a function of the batch of outputs:

    from optbench.referees.metrics import METRICS, Metric

    METRICS.register("mean_abs", Metric(
        "mean_abs", "mean absolute pixel value", panel="mean |x|",
        compute=lambda b: float(b.x.abs().mean())))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from optbench.registry import PluginError, Registry


@dataclass(frozen=True)
class Batch:
    """What a plug-in metric sees of one pressure level: the finite outputs, their
    targets and starting points, their features in every feature space (the primary
    first), the judge ensemble's class probabilities, and the cell's domain, proxy (the
    model pushed against; a `Proxy`) and its logits on x."""
    x: torch.Tensor
    target: torch.Tensor
    start: torch.Tensor
    features: dict[str, torch.Tensor]
    judge_probs: torch.Tensor
    domain: str = ""
    proxy: object = None
    proxy_logits: torch.Tensor | None = None


@dataclass(frozen=True)
class Metric:
    name: str
    doc: str
    panel: str = ""                  # title of its panel in the curves figure ("" = none)
    yscale: str = "linear"           # "linear", "log" or "symlog"
    compute: Callable[[Batch], float] | None = None   # None: the referee computes it
    at_max: bool = False             # a summary column: its value at the highest pressure
    domains: tuple[str, ...] = ()    # computed only on these domains (empty: on every one)
    proxy_kinds: tuple[str, ...] = ()   # only for proxies of these kinds (empty: any)

    def applies(self, domain: str, proxy_kind: str | None = None) -> bool:
        return ((not self.domains or domain in self.domains)
                and (not self.proxy_kinds or proxy_kind in self.proxy_kinds))


def _metric(name: str, obj) -> Metric:
    if not isinstance(obj, Metric):
        raise PluginError(f"{name!r} is a {type(obj).__name__}, not an optbench Metric")
    return obj


METRICS = Registry("metric", check=_metric)

BUILTIN_DOCS = {
    "proxy_prob": "proxy's mean probability of the target class (a discriminator proxy: mean sigmoid(D(x)))",
    "proxy_logit": "proxy's mean target logit",
    "proxy_hit": "share of samples the proxy classifies as the target",
    "judge_<name>_prob": "one judge's mean target probability",
    "judge_<name>_agree": "share of samples where that judge's class equals the proxy's",
    "judge_prob": "judge ensemble (mean probability over the domain's ensemble judges): mean target probability",
    "judge_conf": "judge ensemble's mean top-class probability: how surely the judges see a digit of some class",
    "judge_hit": "share of samples the judge ensemble classifies as the target",
    "judge_agree": "share of samples where the ensemble's class equals the proxy's",
    "gap": "proxy_prob - judge_prob, the Goodhart gap",
    "fid": "Frechet distance to the reference set in the feature net's space (torchmetrics)",
    "kid": "kernel (polynomial MMD) distance to the reference set, unbiased (torchmetrics)",
    "kid_std": "KID's standard deviation over subsets",
    "precision": "share of outputs inside the reference k-NN manifold (Naeem et al. 2020)",
    "recall": "share of reference points inside the outputs' k-NN manifold",
    "density": "how many reference balls hold each output, normalised (1 = like real data)",
    "coverage": "share of reference points with an output inside their k-NN ball",
    "c2st": "classifier two-sample test: 5-fold held-out accuracy of a fresh linear discriminant (Ledoit-Wolf shrinkage) telling outputs from reference digits in feature space (0.5 = indistinguishable)",
    "<metric>@<space>": "a distribution metric (fid ... c2st) in another feature space than the primary one (the domain's feature_spaces)",
    "diversity": "mean pairwise feature distance between outputs of the same target class",
    "out_of_range": "share of pixels outside [0, 1] (by more than 1/255)",
    "l2": "mean L2 distance from the starting point (pixels in [0, 1])",
    "linf": "mean Linf distance from the starting point",
    "diverged_frac": "share of samples with NaN or inf pixels or proxy logits; excluded from the rest "
                     "(selection sources: the exact chance that the selected sample diverged)",
    "pool_diverged": "selection sources: pool members with NaN or inf pixels, proxy output or score; "
                     "ranked below every finite member, so selected only when every candidate diverged",
}

# The curves figure's panels, in order: (metric, title, y scale). "distance" stands for
# each source's own distance (pixel, latent or weight L2, sqrt KL).
BUILTIN_PANELS = {
    "proxy_prob": ("proxy: target probability", "linear"),
    "judge_prob": ("judges (ensemble): target probability", "linear"),
    "kid": ("KID to reference (symlog)", "symlog"),
    "fid": ("FID to reference (log)", "log"),
    "precision": ("precision (in-manifold share)", "linear"),
    "recall": ("recall (reference covered by outputs)", "linear"),
    "c2st": ("two-sample test accuracy (0.5 = like real)", "linear"),
    "diversity": ("within-class diversity (feature distance)", "linear"),
    "distance": ("the source's own distance d", "linear"),
    "gap": ("proxy minus judge probability (Goodhart gap)", "linear"),
}
for _name, _doc in BUILTIN_DOCS.items():
    _title, _scale = BUILTIN_PANELS.get(_name, ("", "linear"))
    METRICS.register(_name, Metric(_name, _doc, _title, _scale))
METRICS.register("distance", Metric("distance", "the source's own distance d (its `distance` metric)",
                                    *BUILTIN_PANELS["distance"]))


def panels() -> list[Metric]:
    """Metrics with a panel: the built-in ones in BUILTIN_PANELS' order, then plug-ins'."""
    extra = [name for name in METRICS if METRICS[name].panel and name not in BUILTIN_PANELS]
    return [METRICS[name] for name in [*BUILTIN_PANELS, *extra]]


def computed_metrics(domain: str | None = None, proxy_kind: str | None = None) -> list[Metric]:
    """Plug-in metrics the referee computes from a Batch (on `domain` with a proxy of
    `proxy_kind`, when given)."""
    out = [METRICS[name] for name in METRICS if METRICS[name].compute is not None]
    return out if domain is None else [m for m in out if m.applies(domain, proxy_kind)]
