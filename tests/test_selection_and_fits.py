"""Best-of-n order statistics and Goodhart-law fits against known answers."""
import itertools
import math

import numpy as np
import pytest
from scipy import integrate, stats

from optbench.pressure.selection import (best_of_n_kl_bound, best_of_n_mean, best_of_n_weights,
                                         effective_sample_size, quantile_weights, quantilizer_mean)
from optbench.report.fits import FORMS, fit_goodhart


def expected_max_of_normals(n: int) -> float:
    """E[max of n iid N(0, 1)] by quadrature: integral of x n phi(x) Phi(x)^(n-1)."""
    f = lambda x: x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1)  # noqa: E731
    return integrate.quad(f, -12, 12)[0]


def test_weights_are_a_distribution_over_ranks():
    w = best_of_n_weights(10, 3)
    assert w.sum() == pytest.approx(1.0) and (w[:2] == 0).all() and (np.diff(w[2:]) > 0).all()
    assert best_of_n_weights(10, 10)[-1] == pytest.approx(1.0)
    assert best_of_n_weights(10, 1) == pytest.approx(np.full(10, 0.1))
    with pytest.raises(ValueError, match="n: must be in 1..10"):
        best_of_n_weights(10, 11)


@pytest.mark.parametrize("n", [2, 8, 64, 1024])
def test_best_of_n_matches_the_known_expected_max_of_normals(n):
    rng = np.random.default_rng(n)
    pool = rng.standard_normal(2**14)
    est = best_of_n_mean(pool, pool, n)
    assert est == pytest.approx(expected_max_of_normals(n), abs=0.03)
    if n == 2:
        assert expected_max_of_normals(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-6)


def test_best_of_n_matches_brute_force_monte_carlo_on_another_metric():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(500)
    values = np.sin(3 * scores) + rng.normal(0, 0.1, 500)   # a "gold" metric of each sample
    n, trials = 16, 40_000
    idx = np.array([rng.choice(500, n, replace=False) for _ in range(trials)])
    best = idx[np.arange(trials), scores[idx].argmax(1)]
    assert best_of_n_mean(scores, values, n) == pytest.approx(values[best].mean(), abs=0.01)


@pytest.mark.parametrize("pool, n", [(7, 1), (7, 3), (9, 5), (8, 8), (12, 2)])
def test_ess_of_best_of_n_against_brute_force(pool, n):
    """P(rank i is the best of n) by enumerating every n-subset of the pool, then Kish's
    ESS = 1 / sum p^2 of those probabilities."""
    counts = np.zeros(pool)
    for subset in itertools.combinations(range(pool), n):
        counts[max(subset)] += 1            # ranks ascending: the subset's best is its max
    p = counts / counts.sum()
    assert best_of_n_weights(pool, n) == pytest.approx(p, abs=1e-12)
    assert effective_sample_size(best_of_n_weights(pool, n)) == pytest.approx(1 / (p ** 2).sum(), rel=1e-10)


def test_ess_limits():
    assert effective_sample_size(best_of_n_weights(16384, 1)) == pytest.approx(16384)   # uniform
    assert effective_sample_size(best_of_n_weights(16384, 16384)) == pytest.approx(1)   # the top one
    # Large n: about N (2n - 1) / n^2 (the weights approach n u^(n-1) / N on ranks u = i / N).
    ess = effective_sample_size(best_of_n_weights(16384, 1024))
    assert ess == pytest.approx(16384 * 2047 / 1024**2, rel=0.05)
    scores = np.random.default_rng(0).normal(size=1000)
    assert effective_sample_size(quantile_weights(scores, 1000 / 40)) == pytest.approx(40)  # top 40
    assert effective_sample_size([2.0, 2.0]) == pytest.approx(2)   # unnormalised: Kish's form


def test_kl_bound_and_quantilizer():
    assert best_of_n_kl_bound(1) == 0.0
    assert best_of_n_kl_bound(4) == pytest.approx(math.log(4) - 0.75)
    scores = np.arange(10.0)
    assert quantilizer_mean(scores, scores, 0.3) == pytest.approx(8.0)  # mean of 7, 8, 9
    assert quantilizer_mean(scores, scores, 1.0) == pytest.approx(4.5)


@pytest.mark.parametrize("form, a, b", [("best_of_n", 1.2, 0.3), ("rl_kl", 0.8, 0.25)])
def test_fit_recovers_known_coefficients_from_noisy_data(form, a, b):
    rng = np.random.default_rng(1)
    d = np.linspace(0.1, 6, 60)
    gold = FORMS[form][0](d, a, b) + rng.normal(0, 0.01, d.shape)
    fit = fit_goodhart(d, gold, form)
    assert fit.a == pytest.approx(a, rel=0.03) and fit.b == pytest.approx(b, rel=0.05)
    assert fit.peak_d == pytest.approx(FORMS[form][1](a, b), rel=0.08)
    assert fit.r2 > 0.99 and len(fit.residuals) == 60
