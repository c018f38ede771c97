"""Referee metrics: numbers saying how far a batch of outputs is from the data. A
referee sees only the outputs, their targets and their starting points; it knows
nothing about how they were made."""
from __future__ import annotations

import torch

from optbench.domains import Domain, get_domain, referee_as_proxy_error
from optbench.metrics import METRICS, PACKAGE, Metric
from optbench.models.checkpoints import load_model
from optbench.models.fixed_batch import model_device
from optbench.proxies import Proxy, as_proxy
from optbench.referees.classifiers import logits_of
from optbench.referees.distribution import Reference, extract, within_class_diversity
from optbench.referees.metrics import Batch, space_metrics


class Referee:
    """Scores batches of outputs for one domain. Built once; caches reference features.

    The judges and feature nets are the referee's own; the proxy is the cell's, passed
    to `evaluate` (default: the one the referee was built with), so a per-seed replicate
    is scored without touching the referee. What it reports is the metric registry's
    (optbench/metrics.py): every registered metric that applies to the domain and the
    proxy's kind, built-in or plug-in alike."""

    def __init__(self, domain: Domain | str, proxy: str | Proxy, device: str | torch.device = "cpu",
                 checkpoint_root=None, *, features: tuple[str, ...] | None = None):
        """`domain`: the Domain (or its registered name); `features`: the feature spaces
        of the distribution metrics, a subset of the domain's feature_spaces (default:
        all); the first is the primary space."""
        dom = self.dom = get_domain(domain)
        if isinstance(proxy, str):
            refereeing = referee_as_proxy_error(dom, proxy)
            if refereeing:
                raise ValueError(f"proxy: {refereeing}")
        self.domain, self.checkpoint_root = dom.name, checkpoint_root
        self.spaces = tuple(dom.feature_spaces if features is None else features)
        unknown = [s for s in self.spaces if s not in dom.feature_spaces]
        if not self.spaces or unknown or len(set(self.spaces)) < len(self.spaces):
            raise ValueError(f"features: expected distinct names from {', '.join(dom.feature_spaces)}, "
                             f"got {features!r}")
        self.bounds = dom.bounds
        self.proxy = (load_proxy(dom, proxy, device, root=checkpoint_root) if isinstance(proxy, str)
                      else as_proxy(proxy))
        self.judges = {name: load_model(dom, name, device, root=checkpoint_root)
                       for name in dom.judges}
        self.ensemble = dom.ensemble
        self.feature_nets = {name: self.judges[name] if name in self.judges else
                             load_model(dom, name, device, root=checkpoint_root) for name in self.spaces}
        self.feature_net = self.feature_nets[self.spaces[0]]   # the primary space
        x_ref, _ = dom.load_split("reference")
        self.references = {name: Reference(extract(net, x_ref)) for name, net in self.feature_nets.items()}
        self.ref_features = self.references[self.spaces[0]].feats.float()
        # A ground-truth domain's exact referee (optbench/gold): its gold_* metrics join
        # every evaluation and its exact null joins the learned metrics' nulls.
        self.gold = dom.gold()
        self._nulls: dict[tuple, dict] = {}

    def metrics(self, proxy: Proxy | None = None) -> list[Metric]:
        """The registered metrics this referee computes for the proxy's kind, in the
        order their values are reported: per-sample read-outs, the exact referee's
        per-sample values, distances, set statistics, the exact referee's set
        statistics, then plug-ins in registration order."""
        kind = (proxy or self.proxy).kind
        chosen = [m for m in (METRICS[k] for k in METRICS) if m.compute is not None
                  and m.applies(self.domain, kind) and (m.available is None or m.available(self))]
        return sorted(chosen, key=_stage)

    def keys(self, metrics: list[Metric]) -> list[str]:
        """Every value's key of `metrics`, in the order they are reported."""
        return [key for key, _, _ in self._layout(metrics)]

    def _layout(self, metrics: list[Metric]):
        """(key, metric, judge or space) of every value in order: metrics per judge
        judge by judge, and metrics per feature space space by space, each group where
        its first member stands."""
        done: set[str] = set()
        for m in metrics:
            if m.name in done:
                continue
            if m.per_judge:
                group = [p for p in metrics if p.per_judge]
                yield from ((p.key(judge=j), p, j) for j in self.judges for p in group)
            elif m.every_space:
                group = [p for p in metrics if p.every_space]
                yield from ((p.key(s, self.spaces[0]), p, s) for s in self.spaces for p in group)
            else:
                group = [m]
                yield m.name, m, None
            done |= {p.name for p in group}

    def distribution_names(self, proxy: Proxy | None = None) -> list[str]:
        """Every set statistic's key (NaN at a level whose set is not a valid sample)."""
        return self.keys([m for m in self.metrics(proxy) if m.kind == "set"])

    def metric_names(self, proxy: Proxy | None = None) -> list[str]:
        """Every key `evaluate` returns besides diverged_frac and n_finite."""
        return self.keys(self.metrics(proxy))

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x's features in every feature space."""
        return {name: extract(net, x) for name, net in self.feature_nets.items()}

    def distribution(self, x: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, float]:
        return self.distribution_of_features(self.features(x), target)

    def distribution_of_features(self, feats: dict[str, torch.Tensor],
                                 target: torch.Tensor | None = None) -> dict[str, float]:
        """`diversity` (grouped by `target`; NaN without one) and every feature-space
        metric, from features already extracted (`features`): what the null resamples."""
        primary = self.spaces[0]
        out = {"diversity": within_class_diversity(feats[primary], target) if target is not None else float("nan")}
        batch = Batch(self, None, None, target, None, {}, feats)
        builtin = [m for m in space_metrics() if m.name in PACKAGE]   # plug-ins: plugin_null
        for space in self.spaces:
            out |= {m.key(space, primary): float(m.compute(batch, space)) for m in builtin}
        return out

    def null(self, n: int, proxy: Proxy | None = None) -> dict[str, dict]:
        """The real-against-real null at sample size n of every metric that has one:
        resampled from the null pool (shipped, cached on disk, or computed once; see
        referees/null.py), drawn from the exact referee's law, or binomial."""
        proxy = proxy or self.proxy
        metrics = self.metrics(proxy)
        resampled = [m for m in metrics if m.null == "pool" and not (m.every_space and m.name in PACKAGE)]
        # The shipped nulls cover the built-in feature-space metrics; any other resampled
        # null (a plug-in's) may read the proxy, so it is keyed by the proxy too.
        key = (n, tuple((m.name, m.version) for m in metrics), id(proxy.model) if resampled else None)
        if key not in self._nulls:
            from optbench.referees.null import cached_null, plugin_null
            from optbench.metrics import binomial_null
            null = cached_null(self, n) | (self.gold.null(n) if self.gold else {})
            null |= plugin_null(self, n, resampled, proxy)
            null |= {m.name: binomial_null(m, n, self.domain) for m in metrics if m.null == "binomial"}
            self._nulls[key] = null
        return self._nulls[key]

    def logits(self, x: torch.Tensor, proxy: Proxy | None = None) -> dict[str, torch.Tensor]:
        """Every classifier's raw output on x, computed once so read-outs for several
        targets (best-of-n per target class) reuse them."""
        return self._forward(x, proxy or self.proxy, with_features=False)[0]

    @torch.no_grad()
    def _forward(self, x: torch.Tensor, proxy: Proxy, with_features: bool = True
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Logits of every classifier and (optionally) features in every space, with one
        forward pass per network: a judge that is also a feature space gives its logits
        as head(features), which is its forward."""
        logits, feats = {"proxy": logits_of(proxy.model, x)}, {}
        for name, judge in self.judges.items():
            if with_features and name in self.feature_nets and hasattr(judge, "head"):
                feats[name] = extract(judge, x)
                device = model_device(judge)
                logits[name] = judge.head(feats[name].to(device)).float().cpu()
            else:
                logits[name] = logits_of(judge, x)
        if with_features:
            feats |= {name: extract(net, x) for name, net in self.feature_nets.items() if name not in feats}
        return logits, feats

    def ensemble_probs(self, logits: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([logits[name].softmax(1) for name in self.ensemble]).mean(0)

    def per_sample(self, logits: dict[str, torch.Tensor], x: torch.Tensor,
                   target: torch.Tensor, proxy: Proxy | None = None) -> dict[str, torch.Tensor]:
        """Per-sample values (float64) of every "sample" metric that needs no starting
        point: what a selection source's pool is scored with, once per target."""
        proxy = proxy or self.proxy
        batch = Batch(self, proxy, x, target, None, logits)
        metrics = [m for m in self.metrics(proxy) if m.kind == "sample" and not m.needs_start]
        return {k: v.double() for k, v in self._each(batch, metrics, lambda m, v: v)}

    def evaluate(self, x: torch.Tensor, target: torch.Tensor, start: torch.Tensor | None,
                 proxy: Proxy | None = None, keep: dict | None = None) -> dict[str, float]:
        """Every metric's value on the level's outputs x (diverged samples excluded and
        counted). `start` None: the outputs have no starting point (a selection), so
        distances from it are NaN. `keep`: a dict that receives every "sample" metric's
        per-output values, (N,) float64 on the CPU, NaN where an output diverged."""
        proxy = proxy or self.proxy
        metrics = self.metrics(proxy)
        logits, feats = self._forward(x, proxy)
        finite = torch.isfinite(x).flatten(1).all(1) & proxy.finite(logits["proxy"])
        out = {"diverged_frac": float(1 - finite.double().mean()), "n_finite": int(finite.sum())}
        if not finite.any():   # every sample diverged: recorded as such, every metric NaN
            return out | {k: float("nan") for k in self.keys(metrics)}
        x, target = x[finite], target[finite]
        start = None if start is None else start[finite]
        batch = Batch(self, proxy, x, target, start, {k: v[finite] for k, v in logits.items()},
                      {k: v[finite] for k, v in feats.items()})
        if keep is None:
            return out | self.values(batch, metrics)
        rows = finite.cpu()

        def widen(v: torch.Tensor) -> torch.Tensor:
            full = torch.full((len(rows),), float("nan"), dtype=torch.float64)
            full[rows] = v.detach().double().cpu()
            return full
        return out | self.values(batch, metrics, lambda key, v: keep.__setitem__(key, widen(v)))

    def values(self, batch: Batch, metrics: list[Metric], keep=None) -> dict[str, float]:
        """One loop over the metrics: a level's value of each (a "sample" metric's mean
        over the outputs, a "set" metric's statistic), then the "derived" ones from
        those. `keep(key, values)`: called with every "sample" metric's per-output values."""
        if keep is None:
            out = dict(self._each(batch, metrics, _level_value))
        else:
            pending = []   # the per-output values of the key _each yields next

            def value(m: Metric, v):
                if m.kind == "sample":
                    pending.append(v)
                return _level_value(m, v)
            out = {}
            for key, v in self._each(batch, metrics, value):
                if pending:
                    keep(key, pending.pop())
                out[key] = v
        return out | self.derived(out, metrics=metrics)

    def derived(self, values: dict[str, float], proxy: Proxy | None = None,
                metrics: list[Metric] | None = None) -> dict[str, float]:
        """The "derived" metrics (gap = proxy_prob - judge_prob) from a level's other
        values: the runner recomputes them after a selection's exact weighting."""
        metrics = self.metrics(proxy) if metrics is None else metrics
        return {m.name: float(m.compute(values)) for m in metrics if m.kind == "derived"}

    def _each(self, batch: Batch, metrics: list[Metric], value):
        """(key, value(metric, computed)) for every value in `_layout`'s order; a
        derived metric holds its place (NaN), and a distance is NaN without starting
        points."""
        per_judge: dict[str, dict] = {}
        for key, m, where in self._layout(metrics):
            if m.kind == "derived" or (m.needs_start and batch.start is None):
                yield key, float("nan")
            elif m.per_judge:
                if m.name not in per_judge:
                    per_judge[m.name] = m.compute(batch)
                yield key, value(m, per_judge[m.name][where])
            elif m.every_space:
                yield key, value(m, m.compute(batch, where))
            else:
                yield key, value(m, m.compute(batch))


def _stage(m: Metric) -> int:
    """A metric's place in a level's row (the order the values were always reported
    in): per-sample read-outs, the exact referee's per-sample values, distances and
    derived values, set statistics, the exact referee's set statistics, plug-ins."""
    if m.name not in PACKAGE:
        return 5
    if m.kind == "sample" and not m.needs_start:
        return 1 if m.role == "gold" else 0
    if m.kind != "set":
        return 2
    return 4 if m.role == "gold" else 3


def _level_value(m: Metric, value) -> float:
    return _mean(value) if m.kind == "sample" else float(value)


def load_proxy(domain: str, name: str, device=None, root=None) -> Proxy:
    """A model of the domain's catalog as a Proxy of its kind (checkpoints.model_kind)."""
    from optbench.models.checkpoints import model_kind
    proxy = as_proxy(load_model(domain, name, device, root=root), model_kind(domain, name, root))
    proxy.name = name
    return proxy


def _mean(t: torch.Tensor) -> float:
    return float(t.double().mean()) if t.numel() else float("nan")
