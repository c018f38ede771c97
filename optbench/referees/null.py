"""Null distributions: what each distribution metric reads when nothing left the data.

"Left the data" means a metric beyond the 99th percentile of its real-against-real null
at the same sample size n: above q99 for the metrics that grow with departure (fid, kid,
c2st), below q01 for those that shrink (precision, recall, density, coverage). The null
is estimated by resampling: `NULL_DRAWS` sets of n real digits, each drawn without
replacement from the null pool (test and generator_train, 2,000 digits that no referee
or feature net was trained on), each scored against the reference set by the same code
as `Referee.distribution`. The reference set is fixed, so the null is conditional on it,
as every comparison is. Sets drawn from a finite pool vary a little less than sets from
the whole distribution (about n / 2,000 less variance: 6% at n = 128), so n may be at
most half the pool.

`false_positive_rate` checks the threshold on real digits outside the pool (proxy_train):
about 1% of sets of them should be flagged, per metric.

Nulls are cheap to look up and slow to compute (a minute or two per n), so they are
shipped for the suites' sample sizes (optbench/checkpoints/<domain>/null_<n>.json) and
otherwise cached on disk ($OPTBENCH_CACHE/null, default ~/.cache/optbench/null), keyed by
everything that changes them. benchmarks/calibrate_null.py (`ship_null`) rewrites the
shipped files after a change to the metrics or the feature nets.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from optbench.cache import NUMBERS_VERSION, cache_dir, entry_lock, key_hash
from optbench.domains import get_domain
from optbench.metrics import departure_side
from optbench.models.checkpoints import model_hash
from optbench.notices import notice
from optbench.stats import null_summary

NULL_VERSION = 1          # bump when the statistic or its estimation changes
NULL_FILE_SCHEMA = "optbench.null/1"   # a null file's layout (its numbers are keyed by null_key)
NULL_DRAWS = 1000
MIN_NULL_DRAWS = 20        # fewer, and q01 / q99 are the extremes of a handful of draws
NULL_SEED = 0
NULL_SPLITS = ("test", "generator_train")
FPR_SPLIT = "proxy_train"  # real digits outside the null pool, for checking the threshold
SHIPPED_N = (128, 200)     # the suites' sample sizes
HEAD = 5                   # first draws stored with a null, so a recomputation can be checked
def departed(null: dict, metric: str, value: float) -> bool | None:
    """Whether `value` of `metric` lies beyond its null's 99% threshold (None when the
    metric has no side or no null)."""
    side = departure_side(metric)
    if side is None or metric not in null:
        return None
    return value > null[metric]["q99"] if side == "high" else value < null[metric]["q01"]


def null_splits(domain) -> tuple[str, ...]:
    """The splits of NULL_SPLITS the domain has (a user's domain may cut only test and
    reference)."""
    return tuple(s for s in NULL_SPLITS if s in get_domain(domain).splits)


def max_null_n(domain) -> int:
    """The largest sample size with a null: half the null pool, so that draws without
    replacement still vary."""
    sizes = get_domain(domain).split_sizes()
    return sum(sizes[s] for s in null_splits(domain)) // 2


def pool_features(referee, splits: tuple[str, ...]) -> dict[str, torch.Tensor]:
    dom = referee.dom
    return referee.features(torch.cat([dom.load_split(s)[0] for s in splits if s in dom.splits]))


def metric_draws(referee, feats: dict[str, torch.Tensor], n: int, draws: int,
                 seed: int) -> dict[str, np.ndarray]:
    """Every distribution metric (every space) of `draws` sets of n rows of `feats`, set j
    drawn without replacement with the generator seeded [seed, j] (so the first k sets do
    not depend on `draws`)."""
    size = len(next(iter(feats.values())))
    if not 6 <= n <= size // 2:
        raise ValueError(f"n: expected 6..{size // 2} (half the pool of {size} real digits), got {n}")
    values: dict[str, list[float]] = {}
    for j in range(draws):
        idx = torch.from_numpy(np.random.default_rng([seed, j]).choice(size, n, replace=False))
        out = referee.distribution_of_features({s: f[idx] for s, f in feats.items()})
        for k, v in out.items():
            if k != "diversity":
                values.setdefault(k, []).append(v)
    return {k: np.asarray(v) for k, v in values.items()}


def _compute(referee, n: int, draws: int, seed: int) -> tuple[dict, dict]:
    values = metric_draws(referee, pool_features(referee, NULL_SPLITS), n, draws, seed)
    return ({m: null_summary(v, n) for m, v in values.items()},
            {m: v[:HEAD].tolist() for m, v in values.items()})


def false_positive_rate(referee, null: dict, n: int, sets: int = 200, seed: int = 1) -> dict[str, float]:
    """Per metric with a departure side: the share of `sets` sets of n real proxy_train
    digits (outside the null pool) that `null` flags as having left the data."""
    dom = referee.dom
    values = metric_draws(referee, referee.features(dom.load_split(FPR_SPLIT)[0]), n, sets, seed)
    return {m: float(np.mean([departed(null, m, x) for x in v]))
            for m, v in values.items() if departure_side(m) and m in null}


def null_key(referee, n: int, draws: int = NULL_DRAWS, seed: int = NULL_SEED) -> dict:
    """Everything that changes a null: a cached or shipped null is used only if its key
    equals this one."""
    return {"null_version": NULL_VERSION, "numbers": NUMBERS_VERSION,
            "torch": ".".join(torch.__version__.split(".")[:2]), "domain": referee.domain,
            "n": n, "draws": draws, "seed": seed, "pool": list(null_splits(referee.dom)),
            "spaces": [[s, model_hash(referee.dom, s, referee.checkpoint_root)] for s in referee.spaces]}


def shipped_path(domain: str, n: int) -> Path:
    """Beside the domain's checkpoints (the package's, or a user domain's own folder)."""
    from optbench.models.checkpoints import checkpoint_dir
    return checkpoint_dir(domain) / f"null_{n}.json"


def _read(path: Path, key: dict) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data["metrics"] if isinstance(data, dict) and data.get("key") == key else None


def _write(path: Path, key: dict, metrics: dict, head: dict) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"schema": NULL_FILE_SCHEMA, "key": key, "metrics": metrics, "head": head},
                              indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def null_draws() -> int:
    """NULL_DRAWS, or $OPTBENCH_NULL_DRAWS: the tests use fewer draws so that each odd
    sample size they try costs seconds, not minutes. The count is part of a null's key,
    so nulls of different sizes are never mixed."""
    text = os.environ.get("OPTBENCH_NULL_DRAWS", "").strip()
    if not text:
        return NULL_DRAWS
    try:
        draws = int(text)
    except ValueError:
        draws = 0
    if draws < MIN_NULL_DRAWS:
        raise ValueError(f"environment variable OPTBENCH_NULL_DRAWS: expected an integer >= "
                         f"{MIN_NULL_DRAWS} (draws of the null, whose q01 and q99 set the departure "
                         f"thresholds), got {text!r}; unset it for the default {NULL_DRAWS}")
    return draws


def rough_null_seconds(n: int, draws: int, spaces: int) -> float:
    """A rough time to compute a null: (30 + 1.2 n) s per 1,000 draws in four feature
    spaces at one thread (measured: 70 s at n = 32, 107 s at n = 64 on a 2-core AMD EPYC
    virtual machine shared with other work); proportional to draws and spaces."""
    return (30 + 1.2 * n) * draws / 1000 * spaces / 4


def null_is_stored(domain: str, spaces: tuple[str, ...], n: int, draws: int | None = None) -> bool:
    """Whether the built-in null for (domain, its feature spaces `spaces`, n) is shipped
    or cached, so a cell needing it computes nothing. Reads only: creates no folder."""
    from types import SimpleNamespace
    from optbench.cache import cache_root
    dom = get_domain(domain)
    key = null_key(SimpleNamespace(domain=dom.name, dom=dom, spaces=tuple(spaces), checkpoint_root=None),
                   n, draws or null_draws())
    shipped = shipped_path(dom, n)
    if shipped.exists() and _read(shipped, key) is not None:
        return True
    return _read(cache_root() / "null" / f"{dom.name}_{n}_{key_hash(key)}.json", key) is not None


def cached_null(referee, n: int, draws: int | None = None, seed: int = NULL_SEED) -> dict[str, dict]:
    """The null for n: the shipped one if its key matches, else the disk cache's, else
    computed once (under a lock, so two processes that need it compute it once) and cached."""
    draws = draws or null_draws()
    key = null_key(referee, n, draws, seed)
    shipped = shipped_path(referee.dom, n)
    if shipped.exists() and (null := _read(shipped, key)) is not None:
        return null
    path = cache_dir("null") / f"{referee.domain}_{n}_{key_hash(key)}.json"
    if (null := _read(path, key)) is not None:
        return null
    with entry_lock(path):
        if (null := _read(path, key)) is not None:   # another process wrote it meanwhile
            return null
        notice(f"computing the real-data null of {referee.domain} at n={n} ({draws} draws in "
               f"{len(referee.spaces)} feature space(s); roughly "
               f"{rough_null_seconds(n, draws, len(referee.spaces)):.0f} s at one thread; once: then "
               f"cached in {path.parent})")
        null, head = _compute(referee, n, draws, seed)
        _write(path, key, null, head)
    return null


def plugin_null(referee, n: int, metrics: list, proxy=None, draws: int | None = None,
                seed: int = NULL_SEED) -> dict[str, dict]:
    """The resampled null of metrics that declare null = "pool", other than the built-in
    feature-space ones (plug-ins'): the same `draws` sets of n real examples from the
    null pool as the built-in metrics' (set j drawn with the generator seeded [seed, j]),
    each scored as a level of outputs is (the examples are their own starting points,
    their labels the targets, the cell's proxy the proxy). Cached on disk under the
    metrics' names and versions and the weights of the proxy and the judges they may read."""
    if not metrics:
        return {}
    proxy = proxy or referee.proxy
    draws = draws or null_draws()
    key = {**null_key(referee, n, draws, seed), "metrics": {m.name: m.version for m in metrics},
           "weights": [weights_digest(net) for net in (proxy.model, *referee.judges.values())]}
    path = cache_dir("null") / f"{referee.domain}_{n}_plugin_{key_hash(key)}.json"
    if (null := _read(path, key)) is not None:
        return null
    with entry_lock(path):
        if (null := _read(path, key)) is not None:
            return null
        notice(f"computing the real-data null of plug-in metrics {', '.join(m.name for m in metrics)} of "
               f"{referee.domain} at n={n} ({draws} draws; once: then cached in {path.parent})")
        from optbench.referees.metrics import Batch
        dom = referee.dom
        x, y = (torch.cat(t) for t in zip(*(dom.load_split(s) for s in null_splits(referee.dom))))
        if not 6 <= n <= len(x) // 2:
            raise ValueError(f"n: expected 6..{len(x) // 2} (half the pool of {len(x)} real examples), got {n}")
        logits, feats = referee._forward(x, proxy)
        values: dict[str, list[float]] = {}
        for j in range(draws):
            idx = torch.from_numpy(np.random.default_rng([seed, j]).choice(len(x), n, replace=False))
            batch = Batch(referee, proxy, x[idx], y[idx], x[idx], {k: v[idx] for k, v in logits.items()},
                          {k: v[idx] for k, v in feats.items()})
            for k, v in referee.values(batch, metrics).items():
                values.setdefault(k, []).append(v)
        null = {k: null_summary(np.asarray(v), n) for k, v in values.items()}
        _write(path, key, null, {k: v[:HEAD] for k, v in values.items()})
    return null


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of a module's parameters and buffers, in order (a per-seed replicate has no
    catalog entry to hash)."""
    import hashlib
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def ship_null(referee, n: int) -> Path:
    """Recompute the shipped null of the referee's domain at n (benchmarks/calibrate_null.py)."""
    key = null_key(referee, n)
    null, head = _compute(referee, n, NULL_DRAWS, NULL_SEED)
    _write(shipped_path(referee.dom, n), key, null, head)
    return shipped_path(referee.dom, n)
