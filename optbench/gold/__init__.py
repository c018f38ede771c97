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
and lists its keys in `names` (those of set_metrics also in `set_names`). Its metrics'
departure sides are in referees/null.py's DEPARTURE_SIDE."""
from __future__ import annotations

import numpy as np
import torch


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

    def null(self, n: int, draws: int = 1000, seed: int = 0) -> dict[str, dict]:
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
        from optbench.referees.null import _summary
        return {k: _summary(np.asarray(v), n) for k, v in values.items()}
