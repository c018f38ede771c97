"""Exact referees: on a ground-truth domain, how far an output is from the data is a
computed fact, not a learned model's opinion. A domain that has one returns it from
`Domain.gold()`; the referee then adds its metrics (all named `gold_*`) to every
evaluation, and its null distribution to every cell's nulls, so departure by the truth
is read the same way as departure by KID.

An exact referee implements:
    per_sample(x, target) -> {name: (N,) tensor}   averaged per level, and weighted
                                                   exactly over a best-of-n pool
    set_metrics(x)        -> {name: float}         statistics of the whole batch
    null(n)               -> {name: {mean, std, q01, q99, draws, n}}
                                                   the metric on n draws from the true law
and lists its keys in `names` (those of set_metrics also in `set_names`). Every key is a
registered metric (optbench/metrics.py), declared in GOLD_METRICS below with its
departure side; a new exact referee's new key adds a line there. A referee whose `identity()`
names everything its values depend on has its null cached on disk: every cell of a
suite needs it, and 1,000 draws cost seconds to minutes."""
from __future__ import annotations

import numpy as np
import torch

from optbench.metrics import METRICS, PACKAGE, Metric
from optbench.stats import null_summary

# (name, per-sample or set, departure side, doc): the exact referees' metrics. Their
# nulls come from the true law ("law"); the referee adds them to every evaluation.
GOLD_METRICS = (
    ("gold_prob", "sample", None, "exact target probability: the Bayes posterior's (mixtures), or whether "
     "the face an output projects to has the target attribute, 0 off the manifold (faces)"),
    ("gold_hit", "sample", None, "share of outputs whose exact class is the target"),
    ("gold_conf", "sample", None, "the Bayes posterior's top-class probability (mixtures)"),
    ("gold_logp_q", "sample", "low", "where log p(x) falls among real samples' log-densities, as a quantile "
     "(0.5 on average for real data)"),
    ("gold_atypical", "sample", "high", "share of outputs outside the data's typical set: log-density "
     "outside the central 99% of real samples' (mixtures), or a projection residual above real faces' "
     "99th percentile (faces)"),
    ("gold_maha", "sample", "high", "Mahalanobis distance to the nearest mixture component (about sqrt(d) "
     "on data)"),
    ("gold_value", "sample", None, "the target's exact posterior for a typical output, 0 for an atypical "
     "one: what an output is worth to someone who asked for a real-looking example of the target"),
    ("gold_proj_err", "sample", None, "RMSE between an output and its best reconstruction on the "
     "renderer's manifold (faces)"),
    ("gold_edge", "sample", None, "share of outputs whose projected latent sits at the box's edge (faces)"),
    ("gold_ks", "set", "high", "Kolmogorov-Smirnov statistic of the outputs' log-density quantiles "
     "against the uniform law they follow on real data: the batch's typicality test (mixtures)"),
)


def _gold_metric(name: str, kind: str, side: str | None, doc: str) -> Metric:
    if kind == "sample":   # one exact per-sample pass per batch, read by each of its keys
        compute = lambda b: b.memo("gold", lambda: b.referee.gold.per_sample(b.x, b.scored_target))[name]  # noqa: E731
    else:
        compute = lambda b: b.memo("gold_set", lambda: b.referee.gold.set_metrics(b.x))[name]  # noqa: E731
    return Metric(name, f"exact referee: {doc}", kind=kind, departs=side, null="law" if side else None,
                  role="gold", compute=compute,
                  available=lambda referee: referee.gold is not None and name in referee.gold.names)


for _row in GOLD_METRICS:
    METRICS.register(_row[0], _gold_metric(*_row))
    PACKAGE.add(_row[0])


class ExactReferee:
    names: tuple[str, ...] = ()          # every key, per-sample and set
    set_names: tuple[str, ...] = ()      # the keys of set_metrics

    def per_sample(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def set_metrics(self, x: torch.Tensor) -> dict[str, float]:
        return {}

    def sample_true(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n fresh draws (x, y) from the true law: the null's samples."""
        raise NotImplementedError

    def identity(self) -> dict | None:
        """Everything this referee's values depend on (JSON-able), or None: not cached."""
        return None

    def cached(self, what: str, compute):
        """compute(), kept on disk under this referee's identity (optbench/cache.py); a
        second worker that needs the same entry waits for the first to write it."""
        ident = self.identity()
        if ident is None:
            return compute()
        import json

        from optbench.cache import cache_dir, entry_lock, key_hash
        key = {**ident, "what": what, "torch": ".".join(torch.__version__.split(".")[:2])}
        path = cache_dir("gold") / f"{what}_{key_hash(key)}.json"
        with entry_lock(path):
            if path.exists():
                return json.loads(path.read_text())["value"]
            value = compute()
            path.write_text(json.dumps({"schema": "optbench.gold_cache/1", "key": key, "value": value}))
        return value

    def null(self, n: int, draws: int = 1000, seed: int = 0) -> dict[str, dict]:
        return self.cached(f"null_{n}_{draws}_{seed}", lambda: self.draw_null(n, draws, seed))

    def draw_null(self, n: int, draws: int, seed: int) -> dict[str, dict]:
        """Every gold metric on `draws` sets of n true samples (their own class as
        target): its real-against-real null, from the law itself rather than a pool."""
        rng = np.random.default_rng([seed, n])
        values: dict[str, list[float]] = {}
        for _ in range(draws):
            x, y = self.sample_true(n, rng)
            row = {k: float(v.double().mean()) for k, v in self.per_sample(x, y).items()}
            row |= self.set_metrics(x)
            for k, v in row.items():
                values.setdefault(k, []).append(v)
        return {k: null_summary(np.asarray(v), n) for k, v in values.items()}
