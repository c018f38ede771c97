"""The metric registry: every number a referee reports is one registered `Metric`,
built-in and plug-in alike. A metric declares what the rest of optbench needs to know
about it, so nothing else keeps a list of metric names:

    kind        "sample": a value per output, averaged per level and weighted exactly over
                a selection source's pool; "set": a statistic of the level's whole set
                (NaN where the source says the set is not a valid sample); "derived":
                computed from the level's other values (after any weighting)
    departs     "high" or "low": the side on which a metric that left the data lies,
                relative to its real-against-real null; None: not a departure reading
    null        how that null is drawn: "pool" (sets of n real examples resampled from
                the domain's null pool), "law" (n draws from an exact referee's true
                law), "binomial" (a flagged share: Binomial(n, null_rate) / n), or None
    every_space computed in every feature space: "<name>" in the primary one,
                "<name>@<space>" in the others
    role        what it is read as: "readout" (a model's verdict on the outputs),
                "referee" (a learned distance from the data, audited against the exact
                gold), "gold" (the exact referee), "detector" (an alarm that reads only
                the proxy's side), "distance", "diagnostic"
    headline    its column position in the equal-proxy and controls tables (0: none)
    version     bumped when its numbers change; a plug-in's (or a changed built-in's)
                name and version enter the id of every cell it applies to, so a new or
                changed metric never meets a stale cell

A plug-in metric is one file that registers one object (the same path as the built-ins):

    import torch
    from optbench.metrics import METRICS, Metric

    METRICS.register("mean_abs", Metric(
        "mean_abs", "mean absolute pixel value", panel="mean |x|", kind="sample",
        departs="high", null="pool", compute=lambda b: b.x.abs().flatten(1).mean(1)))

`compute(batch)` returns a (N,) tensor for a "sample" metric and a float for a "set"
metric; an `every_space` metric's is `compute(batch, space)`, a `per_judge` one's returns
{judge: value}, a "derived" one's is `compute(values)` on the level's other values. A
metric without `compute` is a figure panel the report fills itself ("distance": each
source's own distance).
Written here rather than borrowed: lm-evaluation-harness registers a metric with its
direction and aggregation the same way, but it is a language-model harness."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from optbench.registry import PluginError, Registry

KINDS = ("sample", "set", "derived")
SIDES = ("high", "low")
NULLS = ("pool", "law", "binomial")
ROLES = ("readout", "referee", "gold", "detector", "distance", "diagnostic")


@dataclass(frozen=True)
class Metric:
    name: str
    doc: str
    panel: str = ""                  # title of its panel in the curves figure ("" = none)
    yscale: str = "linear"           # "linear", "log" or "symlog"
    panel_rank: int = 0              # the panel's position (0: after the ranked ones)
    compute: Callable | None = None  # see the module docstring
    at_max: bool = False             # a summary column: its value at the highest pressure
    domains: tuple[str, ...] = ()    # computed only on these domains (empty: on every one)
    proxy_kinds: tuple[str, ...] = ()   # only for proxies of these kinds (empty: any)
    kind: str = "set"
    departs: str | None = None
    null: str | None = None
    null_rate: float = 0.0           # "binomial": the share flagged on real data
    # "binomial" with a calibrated threshold: the number of held-out real examples the
    # flag threshold is an order statistic of, per domain (then the null is
    # beta-binomial, binomial_null); None: the rate is exact.
    calibration: Callable[[str], int] | None = None
    every_space: bool = False
    per_judge: bool = False          # one value per single judge: "<judge>_..." keys
    needs_start: bool = False        # reads the outputs' starting points (a distance)
    role: str = "diagnostic"
    headline: int = 0
    version: int = 1
    # Only where this holds for the referee (e.g. the domain's exact referee has the
    # metric); None: wherever `domains` and `proxy_kinds` allow.
    available: Callable[[Any], bool] | None = None

    def __post_init__(self):
        problems = [f"{field}: expected one of {', '.join(allowed)}, got {value!r}"
                    for field, value, allowed in (("kind", self.kind, KINDS), ("role", self.role, ROLES))
                    if value not in allowed]
        if self.departs is not None and self.departs not in SIDES:
            problems.append(f"departs: expected 'high', 'low' or None, got {self.departs!r}")
        if self.null is not None and self.null not in NULLS:
            problems.append(f"null: expected one of {', '.join(NULLS)} or None, got {self.null!r}")
        if self.null == "binomial" and not 0 < self.null_rate < 1:
            problems.append(f"null_rate: a binomial null needs a rate in (0, 1), got {self.null_rate!r}")
        if self.null == "law" and self.role != "gold":
            problems.append("null: 'law' is drawn by a domain's exact referee, for role 'gold' only; use 'pool'")
        if self.null and self.departs is None:
            problems.append("departs: a metric with a null needs a departure side ('high' or 'low')")
        if not self.name.replace("_", "a").isalnum() or not self.name[:1].isalpha():
            if not (self.per_judge and self.name.startswith("<judge>_")):
                problems.append(f"name: expected letters, digits and '_' starting with a letter, got {self.name!r}")
        if problems:
            raise PluginError(f"metric {self.name!r}: {problems[0]}")

    def applies(self, domain: str, proxy_kind: str | None = None) -> bool:
        return ((not self.domains or domain in self.domains)
                and (not self.proxy_kinds or proxy_kind is None or proxy_kind in self.proxy_kinds))

    def key(self, space: str = "", primary: str = "", judge: str = "") -> str:
        """The name of one value: per judge "<judge>_<rest>", per feature space
        "<name>@<space>" outside the primary space."""
        if self.per_judge:
            return self.name.replace("<judge>", judge)
        return self.name if not space or space == primary else f"{self.name}@{space}"


def _metric(name: str, obj) -> Metric:
    if not isinstance(obj, Metric):
        raise PluginError(f"{name!r} is a {type(obj).__name__}, not an optbench Metric")
    if obj.name != name:
        raise PluginError(f"metric registered as {name!r} is named {obj.name!r}; use one name")
    return obj


METRICS = Registry("metric", check=_metric)

# Names the package registers when it is imported (referees/metrics.py, gold/): covered
# by the numbers version, so they enter no cell id unless their own version moves.
PACKAGE: set[str] = set()


def base_name(key: str) -> str:
    """A value's metric name: "kid@judge_wide" -> "kid"."""
    return key.split("@")[0]


def lookup(key: str) -> Metric | None:
    """The registered metric of a value's key ("kid@space" included), or None."""
    name = base_name(key)
    return METRICS[name] if name in METRICS else None


def departure_side(key: str) -> str | None:
    """"high", "low", or None for a value's key, "@space" or not."""
    m = lookup(key)
    return m.departs if m else None


def with_role(role: str) -> list[Metric]:
    return [METRICS[k] for k in METRICS if METRICS[k].role == role]


def headline_metrics() -> tuple[str, ...]:
    """The equal-proxy and controls tables' columns, in their declared order."""
    chosen = [METRICS[k] for k in METRICS if METRICS[k].headline]
    return tuple(m.name for m in sorted(chosen, key=lambda m: m.headline))


def at_max_metrics() -> set[str]:
    return {k for k in METRICS if METRICS[k].at_max}


def panels() -> list[Metric]:
    """Metrics with a panel in the curves figure: by `panel_rank`, then the unranked
    ones (plug-ins') in registration order."""
    chosen = [METRICS[k] for k in METRICS if METRICS[k].panel]
    return sorted(chosen, key=lambda m: (m.panel_rank == 0, m.panel_rank))


def identity(domain: str) -> dict[str, int]:
    """The metrics that enter a cell's id on `domain`: every plug-in metric that applies
    there, and any package metric whose version moved, with their versions."""
    return {k: METRICS[k].version for k in METRICS
            if METRICS[k].applies(domain) and (k not in PACKAGE or METRICS[k].version != 1)}


def threshold_rank(m: int, rate: float) -> int:
    """The rank k (1-based, ascending) of the order statistic of m calibration scores used
    as a flag threshold for a nominal rate: k = ceil((1 - rate)(m + 1)). A fresh real
    score exceeds the k-th of m exchangeable scores with probability (m + 1 - k) / (m + 1)
    on average, and that probability, over calibration draws, is Beta(m + 1 - k, k)
    (the order statistics of uniforms; David & Nagaraja 2003, "Order Statistics", eq. 2.2.1)."""
    import math
    if m < 1:
        raise ValueError(f"calibration: needs at least one example, got {m}")
    return min(m, max(1, math.ceil((1 - rate) * (m + 1) - 1e-9)))


def binomial_null(metric: Metric, n: int, domain: str | None = None) -> dict:
    """The null of a flagged share at n samples. With an exact rate: Binomial(n, rate) / n.
    With a threshold calibrated on m held-out real examples (`metric.calibration`), the
    rate a fresh real example is flagged with is itself random, Beta(m + 1 - k, k)
    (threshold_rank), so the flagged count of n fresh real examples is
    BetaBinomial(n, m + 1 - k, k): its 1st and 99th percentiles (scipy), mean and std."""
    from scipy.stats import betabinom, binom
    rate = metric.null_rate
    m = metric.calibration(domain) if metric.calibration is not None and domain is not None else 0
    if m:
        k = threshold_rank(m, rate)
        law, name = betabinom(n, m + 1 - k, k), f"BetaBinomial({n}, {m + 1 - k}, {k}) / {n}"
    else:
        law, name = binom(n, rate), f"Binomial({n}, {rate}) / {n}"
    return {"mean": float(law.mean() / n), "std": float(law.std() / n), "q01": float(law.ppf(0.01) / n),
            "q99": float(law.ppf(0.99) / n), "draws": 0, "n": n, "law": name}