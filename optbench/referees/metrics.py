"""The referee's built-in metrics: each one registered once, with its declaration
(optbench/metrics.py) and its computation side by side. The referee (referees/__init__.py)
evaluates a level as one loop over the metrics that apply; computations several metrics
share (one forward pass of every judge, the distribution metrics of one feature space)
run once per batch through `Batch.memo`."""
from __future__ import annotations

import math

import torch

from optbench.metrics import METRICS, PACKAGE, Metric
from optbench.proxies import class_readout as target_readout
from optbench.referees.distribution import distribution_metrics, within_class_diversity


class Batch:
    """What a metric sees of one pressure level: the finite outputs `x`, their `target`
    classes and starting points `start` (None for a selection pool), the `referee` (its
    judges, feature nets, reference sets, exact referee), the cell's `proxy` (the model
    pushed against) and `logits` (every classifier's raw output: "proxy" and each judge).
    `features` (every feature space, the primary first) are extracted on first use."""

    def __init__(self, referee, proxy, x: torch.Tensor, target: torch.Tensor, start: torch.Tensor | None,
                 logits: dict[str, torch.Tensor], features: dict[str, torch.Tensor] | None = None):
        self.referee, self.proxy, self.x, self.target, self.start = referee, proxy, x, target, start
        self.logits = logits
        self._features = features
        self._memo: dict = {}

    @property
    def domain(self) -> str:
        return self.referee.domain

    @property
    def proxy_logits(self) -> torch.Tensor:
        return self.logits["proxy"]

    @property
    def features(self) -> dict[str, torch.Tensor]:
        if self._features is None:
            self._features = self.referee.features(self.x)
        return self._features

    @property
    def scored_target(self) -> torch.Tensor:
        """The class the read-outs score: the target, or for a proxy without classes (a
        discriminator) the judge ensemble's own class."""
        return _readouts(self)["target"]

    @property
    def judge_probs(self) -> torch.Tensor:
        """The judge ensemble's class probabilities (mean over the ensemble's judges)."""
        return self.memo("judge_probs", lambda: self.referee.ensemble_probs(self.logits))

    def memo(self, key, compute):
        """compute(), once per batch: metrics that share a computation share its result."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def register(metric: Metric) -> Metric:
    METRICS.register(metric.name, metric)
    PACKAGE.add(metric.name)
    return metric


def _readouts(b: Batch) -> dict[str, torch.Tensor]:
    """Every per-sample read-out of the proxy and the judges (float64). A proxy without
    classes (a discriminator) has no target class: its probability is sigmoid(D(x)), and
    the target becomes the judge ensemble's own class, so judge_prob is the judges'
    confidence that x is an example of some class."""
    def compute():
        ens = b.judge_probs
        ens_pred = ens.argmax(1)
        target = b.target if b.proxy.has_classes else ens_pred
        r = b.proxy.readout(b.logits["proxy"], target)
        out = {"proxy_prob": r["prob"], "proxy_logit": r["logit"], "proxy_hit": r["hit"], "target": target}
        proxy_pred = r["pred"]
        nan = torch.full((len(b.x),), float("nan"))
        for name in b.referee.judges:
            j = target_readout(b.logits[name], target)
            out[f"{name}_prob"] = j["prob"]
            out[f"{name}_agree"] = nan if proxy_pred is None else j["pred"] == proxy_pred
        out["judge_prob"] = ens.gather(1, target[:, None]).squeeze(1)
        out["judge_hit"] = ens_pred == target
        out["judge_agree"] = nan if proxy_pred is None else ens_pred == proxy_pred
        out["judge_conf"] = ens.amax(1)
        return out
    return b.memo("readouts", compute)


def _readout(name: str):
    return lambda b: _readouts(b)[name]


def _per_judge(suffix: str):
    return lambda b: {j: _readouts(b)[f"{j}_{suffix}"] for j in b.referee.judges}


def _out_of_range(b: Batch) -> torch.Tensor:
    lo, hi = b.referee.bounds
    tol = (hi - lo) / 255   # one grey level of an 8-bit image of the range
    return ((b.x < lo - tol) | (b.x > hi + tol)).flatten(1).double().mean(1)


def _delta(b: Batch) -> torch.Tensor:
    return b.memo("delta", lambda: (b.x - b.start).flatten(1))


def _diversity(b: Batch) -> float:
    # Grouped by the judge ensemble's class, for outputs and for the real baseline alike:
    # grouping outputs by target but real digits by label made unchanged real starts
    # read 8.2 against a baseline of 3.0.
    return within_class_diversity(b.features[b.referee.spaces[0]], b.judge_probs.argmax(1))


def space_values(b: Batch, space: str) -> dict[str, float]:
    """Every distribution metric in one feature space, computed together (NaN under 6
    samples: PRDC needs k + 1 points, FID a covariance)."""
    def compute():
        feats = b.features[space]
        if len(feats) < 6:
            return {m.name: math.nan for m in space_metrics()}
        return distribution_metrics(b.referee.references[space], feats)
    return b.memo(("space", space), compute)


def _in_space(name: str):
    return lambda b, space: space_values(b, space)[name]


def space_metrics() -> list[Metric]:
    return [METRICS[k] for k in METRICS if METRICS[k].every_space]


for _m in (
    Metric("proxy_prob", "proxy's mean probability of the target class (a discriminator proxy: mean "
           "sigmoid(D(x)))", "proxy: target probability", panel_rank=1, kind="sample", role="readout",
           compute=_readout("proxy_prob")),
    Metric("proxy_logit", "proxy's mean target logit", kind="sample", role="readout",
           compute=_readout("proxy_logit")),
    Metric("proxy_hit", "share of samples the proxy classifies as the target", kind="sample",
           role="readout", compute=_readout("proxy_hit")),
    Metric("<judge>_prob", "one judge's mean target probability", kind="sample", per_judge=True,
           role="readout", compute=_per_judge("prob")),
    Metric("<judge>_agree", "share of samples where that judge's class equals the proxy's",
           kind="sample", per_judge=True, role="readout", compute=_per_judge("agree")),
    Metric("judge_prob", "judge ensemble (mean probability over the domain's ensemble judges): mean "
           "target probability", "judges (ensemble): target probability", panel_rank=2, kind="sample", role="readout",
           headline=2, compute=_readout("judge_prob")),
    Metric("judge_hit", "share of samples the judge ensemble classifies as the target", kind="sample",
           role="readout", compute=_readout("judge_hit")),
    Metric("judge_agree", "share of samples where the ensemble's class equals the proxy's", kind="sample",
           role="readout", compute=_readout("judge_agree")),
    Metric("judge_conf", "judge ensemble's mean top-class probability: how surely the judges see an "
           "example of some class", kind="sample", role="readout", at_max=True,
           compute=_readout("judge_conf")),
    Metric("out_of_range", "share of pixels outside the domain's bounds (by more than 1/255 of the range)",
           kind="sample", role="diagnostic", compute=_out_of_range),
    Metric("gap", "proxy_prob - judge_prob, the Goodhart gap", "proxy minus judge probability (Goodhart gap)",
           panel_rank=10, kind="derived", role="readout", compute=lambda v: v["proxy_prob"] - v["judge_prob"]),
    Metric("l2", "mean L2 distance from the starting point", kind="sample", needs_start=True,
           role="distance", compute=lambda b: _delta(b).norm(dim=1)),
    Metric("linf", "mean Linf distance from the starting point", kind="sample", needs_start=True,
           role="distance", compute=lambda b: _delta(b).abs().amax(1)),
    Metric("diversity", "mean pairwise feature distance between outputs of the same class (the judge "
           "ensemble's), in the primary feature space", "within-class diversity (feature distance)",
           panel_rank=8, role="diagnostic", compute=_diversity),
    Metric("fid", "Frechet distance to the reference set in the feature net's space (torchmetrics' "
           "estimator)", "FID to reference (log)", "log", panel_rank=4, every_space=True, departs="high", null="pool",
           role="referee", compute=_in_space("fid")),
    Metric("kid", "kernel (polynomial MMD) distance to the reference set, unbiased (torchmetrics' "
           "estimator)", "KID to reference (symlog)", "symlog", panel_rank=3, every_space=True, departs="high",
           null="pool", role="referee", headline=1, compute=_in_space("kid")),
    Metric("kid_std", "KID's standard deviation over subsets", every_space=True, role="diagnostic",
           compute=_in_space("kid_std")),
    Metric("precision", "share of outputs inside the reference k-NN manifold (Naeem et al. 2020)",
           "precision (in-manifold share)", panel_rank=5, every_space=True, departs="low", null="pool", role="referee",
           headline=4, compute=_in_space("precision")),
    Metric("recall", "share of reference points inside the outputs' k-NN manifold",
           "recall (reference covered by outputs)", panel_rank=6, every_space=True, departs="low", null="pool",
           role="referee", compute=_in_space("recall")),
    Metric("density", "how many reference balls hold each output, normalised (1 = like real data)",
           every_space=True, departs="low", null="pool", role="referee", compute=_in_space("density")),
    Metric("coverage", "share of reference points with an output inside their k-NN ball",
           every_space=True, departs="low", null="pool", role="referee", compute=_in_space("coverage")),
    Metric("c2st", "classifier two-sample test: 5-fold held-out accuracy of a fresh linear discriminant "
           "(Ledoit-Wolf shrinkage) telling outputs from reference examples in feature space (0.5 = "
           "indistinguishable)", "two-sample test accuracy (0.5 = like real)", panel_rank=7, every_space=True,
           departs="high", null="pool", role="referee", headline=3, at_max=True,
           compute=_in_space("c2st")),
    Metric("distance", "the source's own distance d (the row named by the cell's `distance`: pixel "
           "l2, latent_l2, param_l2 or sqrt_kl); a figure panel, not computed by the referee",
           "the source's own distance d", panel_rank=9, kind="derived", role="distance"),
):
    register(_m)

# The exact referees' gold_* metrics are declared beside them (optbench/gold/); loading
# the referee's metrics loads theirs, so the registry is whole wherever it is read.
import optbench.gold  # noqa: E402,F401
