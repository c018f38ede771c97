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
departure sides are in referees/null.py's DEPARTURE_SIDE. A referee whose `identity()`
names everything its values depend on has its null cached on disk: every cell of a
suite needs it, and 1,000 draws cost seconds to minutes."""
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
            path.write_text(json.dumps({"key": key, "value": value}))
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
        from optbench.referees.null import _summary
        return {k: _summary(np.asarray(v), n) for k, v in values.items()}
