"""Selection pressure from one pool of samples: best-of-n and the quantilizer.

Best-of-n: for a pool of N samples sorted by proxy score, the best of a uniformly random
n-subset is the i-th smallest with probability C(i-1, n-1) / C(N, n). Averaging any
per-sample metric with these weights gives the unbiased estimate of its expectation under
best-of-n (a U-statistic), for every n <= N from one sort, with no resampling.
The KL divergence of best-of-n from the base distribution is at most
log n - (n - 1) / n (an upper bound, tight for continuous scores; Gao et al. 2022)."""
from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln


def best_of_n_weights(pool_size: int, n: int) -> np.ndarray:
    """Weights over the pool sorted ascending by proxy score: P(rank i is the max of n)."""
    if not 1 <= n <= pool_size:
        raise ValueError(f"n: must be in 1..{pool_size}, got {n}")
    i = np.arange(1, pool_size + 1)
    log_w = np.full(pool_size, -np.inf)
    ok = i >= n
    # log C(i-1, n-1) - log C(N, n), via log-gamma so large pools do not overflow
    log_w[ok] = (gammaln(i[ok]) - gammaln(n) - gammaln(i[ok] - n + 1)
                 - (gammaln(pool_size + 1) - gammaln(n + 1) - gammaln(pool_size - n + 1)))
    w = np.exp(log_w)
    return w / w.sum()


def effective_sample_size(weights) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2, which is 1 / sum w^2 for weights
    summing to 1: how many pool samples a weighted mean effectively rests on (N for
    uniform weights, 1 when one sample carries all the weight)."""
    w = np.asarray(weights, dtype=float)
    return float(w.sum() ** 2 / (w ** 2).sum())


def best_of_n_mean(scores: np.ndarray, values: np.ndarray, n: int) -> float:
    """Unbiased estimate of E[value of the best (by score) of n samples]."""
    order = np.argsort(scores, kind="stable")
    return float(best_of_n_weights(len(scores), n) @ np.asarray(values, dtype=float)[order])


def best_of_n_kl_bound(n: int) -> float:
    return math.log(n) - (n - 1) / n


def quantilizer_mean(scores: np.ndarray, values: np.ndarray, q: float) -> float:
    """E[value] when sampling uniformly from the top q fraction of the pool by score."""
    if not 0 < q <= 1:
        raise ValueError(f"q: must be in (0, 1], got {q}")
    k = max(1, math.ceil(q * len(scores)))
    top = np.argsort(scores, kind="stable")[-k:]
    return float(np.asarray(values, dtype=float)[top].mean())


def diverged_lowest(scores: np.ndarray, diverged: np.ndarray) -> np.ndarray:
    """(targets, N) selection scores with every diverged member (`diverged_members`) at
    -inf, strictly below every other member: a score of -inf (probability 0) becomes the
    lowest finite float. np.argsort puts NaN last, that is, highest, so unguarded,
    best-of-n would prefer diverged members; with this, one is selected only when every
    candidate diverged."""
    out = np.where(scores == -np.inf, -np.finfo(np.float64).max, scores)
    out[:, diverged] = -np.inf
    return out


def diverged_members(scores: np.ndarray, finite_outputs: np.ndarray) -> np.ndarray:
    """(N,) whether each pool member diverged: a non-finite output (pixels or proxy
    output), or a NaN or +inf score for any target."""
    return ~finite_outputs | (np.isnan(scores) | (scores == np.inf)).any(0)


def selection_levels(pool_size: int) -> list[int]:
    """n = 1, 2, 3, 4, 6, 8, 11, 16, ... (powers of sqrt 2, rounded) up to the pool size."""
    levels, k = [], 0
    while (n := round(2 ** (k / 2))) < pool_size:
        if not levels or n > levels[-1]:
            levels.append(n)
        k += 1
    return levels + [pool_size]


def quantile_weights(scores: np.ndarray, inv_q: float) -> np.ndarray:
    """Weights over the pool (in its own order) of the quantilizer: uniform on the top
    ceil(N / inv_q) samples by score (the 1e-9 absorbs float error when inv_q = N / k)."""
    k = max(1, math.ceil(len(scores) / inv_q - 1e-9))
    w = np.zeros(len(scores))
    w[np.argsort(scores, kind="stable")[-k:]] = 1.0 / k
    return w


def best_of_n_pool_weights(scores: np.ndarray, n: int) -> np.ndarray:
    """best_of_n_weights, in the pool's own order rather than sorted."""
    order = np.argsort(scores, kind="stable")
    w = np.empty(len(scores))
    w[order] = best_of_n_weights(len(scores), n)
    return w


def subpool_best(scores: np.ndarray, n: int, subpool: int) -> np.ndarray:
    """Index of the best of the first n members of each disjoint sub-pool of size
    `subpool` (row j of `scores` scores sub-pool j's candidates for its own target):
    one exact, independent draw of best-of-n per sub-pool, for n <= subpool."""
    rows = np.arange(len(scores))
    return rows * subpool + np.argmax(scores[:, :n], axis=1)
