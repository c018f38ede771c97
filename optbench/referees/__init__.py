"""Referee metrics: numbers saying how far a batch of outputs is from the data. A
referee sees only the outputs, their targets and their starting points; it knows
nothing about how they were made."""
from __future__ import annotations

import torch

from optbench.domains import get_domain, referee_as_proxy_error
from optbench.models.checkpoints import load_model
from optbench.proxies import Proxy, as_proxy
from optbench.models.fixed_batch import model_device
from optbench.referees.classifiers import logits_of, target_readout
from optbench.referees.distribution import Reference, distribution_metrics, extract, within_class_diversity

# Computed in every feature space: unsuffixed in the primary (first) space, "<metric>@<space>"
# in the others. `diversity` is computed in the primary space only.
DISTRIBUTION_METRICS = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage", "c2st")


def space_metric(metric: str, space: str, primary: str) -> str:
    """The key of `metric` in feature space `space`: "kid" in the primary space, else "kid@<space>"."""
    return metric if space == primary else f"{metric}@{space}"

from optbench.referees.metrics import METRICS, Batch, computed_metrics  # noqa: E402,F401


class Referee:
    """Scores batches of outputs for one domain. Built once; caches reference features.

    The judges and feature nets are the referee's own; the proxy is the cell's, passed
    to `evaluate` (default: the one the referee was built with), so a per-seed replicate
    is scored without touching the referee."""

    def __init__(self, domain: str, proxy: str | Proxy, device: str | torch.device = "cpu",
                 checkpoint_root=None, *, features: tuple[str, ...] | None = None):
        """`features`: the feature spaces of the distribution metrics, a subset of the
        domain's feature_spaces (default: all); the first is the primary space."""
        dom = get_domain(domain)
        if isinstance(proxy, str):
            refereeing = referee_as_proxy_error(domain, proxy)
            if refereeing:
                raise ValueError(f"proxy: {refereeing}")
        self.domain, self.checkpoint_root = dom.name, checkpoint_root
        self.spaces = tuple(dom.feature_spaces if features is None else features)
        unknown = [s for s in self.spaces if s not in dom.feature_spaces]
        if not self.spaces or unknown or len(set(self.spaces)) < len(self.spaces):
            raise ValueError(f"features: expected distinct names from {', '.join(dom.feature_spaces)}, "
                             f"got {features!r}")
        self.bounds = dom.bounds
        self.proxy = (load_proxy(domain, proxy, device, root=checkpoint_root) if isinstance(proxy, str)
                      else as_proxy(proxy))
        self.judges = {name: load_model(domain, name, device, root=checkpoint_root)
                       for name in dom.judges}
        self.ensemble = dom.ensemble
        self.feature_nets = {name: self.judges[name] if name in self.judges else
                             load_model(domain, name, device, root=checkpoint_root) for name in self.spaces}
        self.feature_net = self.feature_nets[self.spaces[0]]   # the primary space
        x_ref, _ = dom.load_split("reference")
        self.references = {name: Reference(extract(net, x_ref)) for name, net in self.feature_nets.items()}
        self.ref_features = self.references[self.spaces[0]].feats.float()
        # A ground-truth domain's exact referee (optbench/gold): its gold_* metrics join
        # every evaluation and its exact null joins the learned metrics' nulls.
        self.gold = dom.gold()
        self._nulls: dict[int, dict] = {}

    def distribution_names(self) -> list[str]:
        """Every set metric key: the distribution metrics in every feature space,
        `diversity`, and the exact referee's set metrics."""
        gold = list(self.gold.set_names) if self.gold else []
        return ["diversity", *(space_metric(m, s, self.spaces[0]) for s in self.spaces for m in DISTRIBUTION_METRICS),
                *gold]

    def metric_names(self, proxy: Proxy | None = None) -> list[str]:
        """Every key `evaluate` returns besides diverged_frac and n_finite."""
        per = ["proxy_prob", "proxy_logit", "proxy_hit",
               *(f"{n}_{m}" for n in self.judges for m in ("prob", "agree")),
               "judge_prob", "judge_hit", "judge_agree", "judge_conf", "out_of_range",
               *(k for k in (self.gold.names if self.gold else ()) if k not in self.gold.set_names)]
        plugins = computed_metrics(self.domain, (proxy or self.proxy).kind)
        return [*per, "gap", "l2", "linf", *self.distribution_names(), *(m.name for m in plugins)]

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x's features in every feature space."""
        return {name: extract(net, x) for name, net in self.feature_nets.items()}

    def distribution(self, x: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, float]:
        return self.distribution_of_features(self.features(x), target)

    def distribution_of_features(self, feats: dict[str, torch.Tensor],
                                 target: torch.Tensor | None = None) -> dict[str, float]:
        """Every distribution metric from features already extracted (`features`)."""
        primary = self.spaces[0]
        out = {"diversity": within_class_diversity(feats[primary], target) if target is not None else float("nan")}
        for space in self.spaces:
            if len(feats[space]) < 6:  # PRDC needs k+1 points, FID a covariance
                values = {m: float("nan") for m in DISTRIBUTION_METRICS}
            else:
                values = distribution_metrics(self.references[space], feats[space])
            out |= {space_metric(m, space, primary): v for m, v in values.items()}
        return out

    def null(self, n: int) -> dict[str, dict]:
        """The real-against-real null distribution of every distribution metric at sample
        size n (shipped, cached on disk, or computed once): see referees/null.py."""
        if n not in self._nulls:
            from optbench.referees.null import cached_null
            self._nulls[n] = cached_null(self, n) | (self.gold.null(n) if self.gold else {})
        return self._nulls[n]

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
        """Per-sample values of every metric that has one (finite samples only).

        A proxy without classes (a GAN discriminator) has no target class: its
        probability is sigmoid(D(x)), and the target becomes the judge ensemble's own
        class, so judge_prob is the judges' confidence that x is an example of some class."""
        proxy = proxy or self.proxy
        ens = self.ensemble_probs(logits)
        ens_pred = ens.argmax(1)
        if not proxy.has_classes:
            target = ens_pred
        r = proxy.readout(logits["proxy"], target)
        out = {"proxy_prob": r["prob"], "proxy_logit": r["logit"], "proxy_hit": r["hit"]}
        proxy_pred = r["pred"]
        nan = torch.full((len(x),), float("nan"))
        for name in self.judges:
            r = target_readout(logits[name], target)
            out[f"{name}_prob"] = r["prob"]
            out[f"{name}_agree"] = nan if proxy_pred is None else r["pred"] == proxy_pred
        out["judge_prob"] = ens.gather(1, target[:, None]).squeeze(1)
        out["judge_hit"] = ens_pred == target
        out["judge_agree"] = nan if proxy_pred is None else ens_pred == proxy_pred
        out["judge_conf"] = ens.amax(1)
        lo, hi = self.bounds
        tol = (hi - lo) / 255   # one grey level of an 8-bit image of the range
        out["out_of_range"] = ((x < lo - tol) | (x > hi + tol)).flatten(1).double().mean(1)
        if self.gold:
            out |= self.gold.per_sample(x, target)
        return {k: v.double() for k, v in out.items()}

    def evaluate(self, x: torch.Tensor, target: torch.Tensor, start: torch.Tensor,
                 proxy: Proxy | None = None) -> dict[str, float]:
        proxy = proxy or self.proxy
        logits, feats = self._forward(x, proxy)
        finite = torch.isfinite(x).flatten(1).all(1) & proxy.finite(logits["proxy"])
        out = {"diverged_frac": float(1 - finite.double().mean()), "n_finite": int(finite.sum())}
        if not finite.any():   # every sample diverged: recorded as such, every metric NaN
            return out | {k: float("nan") for k in self.metric_names(proxy)}
        x, target, start = x[finite], target[finite], start[finite]
        logits = {k: v[finite] for k, v in logits.items()}
        feats = {k: v[finite] for k, v in feats.items()}
        out |= {k: _mean(v) for k, v in self.per_sample(logits, x, target, proxy).items()}
        ens = self.ensemble_probs(logits)
        out["gap"] = out["proxy_prob"] - out["judge_prob"]
        delta = (x - start).flatten(1)
        out["l2"], out["linf"] = _mean(delta.norm(dim=1)), _mean(delta.abs().amax(1))
        # Diversity is grouped by the judge ensemble's class, for outputs and for the
        # real baseline alike: grouping outputs by target but real digits by label made
        # unchanged real starts read 8.2 against a baseline of 3.0.
        out |= self.distribution_of_features(feats, ens.argmax(1))
        if self.gold:
            out |= self.gold.set_metrics(x)
        plugins = computed_metrics(self.domain, proxy.kind)   # on the same finite outputs and features
        if plugins:
            batch = Batch(x, target, start, feats, ens, domain=self.domain, proxy=proxy,
                          proxy_logits=logits["proxy"])
            out |= {m.name: float(m.compute(batch)) for m in plugins}
        return out


def load_proxy(domain: str, name: str, device=None, root=None) -> Proxy:
    """A model of the domain's catalog as a Proxy of its kind (manifest "kind", else the
    module's `proxy_kind`)."""
    from optbench.models.checkpoints import model_entry
    kind = model_entry(domain, name, root).get("kind")
    proxy = as_proxy(load_model(domain, name, device, root=root), kind)
    proxy.name = name
    return proxy


def _mean(t: torch.Tensor) -> float:
    return float(t.double().mean()) if t.numel() else float("nan")
