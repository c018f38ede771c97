"""Best-of-n order statistics and Goodhart-law fits against known answers."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

from optbench.pressure.selection import (best_of_n_kl_bound, best_of_n_mean, best_of_n_weights,
                                         quantilizer_mean)
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


def test_kl_bound_and_quantilizer():
    assert best_of_n_kl_bound(1) == 0.0
    assert best_of_n_kl_bound(4) == pytest.approx(math.log(4) - 0.75)
    scores = np.arange(10.0)
    assert quantilizer_mean(scores, scores, 0.3) == pytest.approx(8.0)  # mean of 7, 8, 9
    assert quantilizer_mean(scores, scores, 1.0) == pytest.approx(4.5)


@pytest.mark.parametrize("form, a, b", [("bon", 1.2, 0.3), ("rl", 0.8, 0.25)])
def test_fit_recovers_known_coefficients_from_noisy_data(form, a, b):
    rng = np.random.default_rng(1)
    d = np.linspace(0.1, 6, 60)
    gold = FORMS[form][0](d, a, b) + rng.normal(0, 0.01, d.shape)
    fit = fit_goodhart(d, gold, form)
    assert fit.a == pytest.approx(a, rel=0.03) and fit.b == pytest.approx(b, rel=0.05)
    assert fit.peak_d == pytest.approx(FORMS[form][1](a, b), rel=0.08)
    assert fit.r2 > 0.99 and len(fit.residuals) == 60
