"""Detectors checked on cases with a known answer (issue 16): Mahalanobis against scipy's
closed form on Gaussian features, energy against scipy's logsumexp, ensemble
disagreement zero for identical members, the input-gradient norm against a linear
model's analytic gradient."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis
from scipy.special import logsumexp

from optbench.detectors import ClassGaussians, disagreement, energy, grad_norm, max_logit


def test_mahalanobis_matches_scipy_on_gaussian_features():
    rng = np.random.default_rng(0)
    d, n = 5, 4000
    a = rng.standard_normal((d, d))
    cov = a @ a.T + 0.5 * np.eye(d)
    means = rng.standard_normal((3, d)) * 3
    labels = np.repeat(np.arange(3), n)
    feats = means[labels] + rng.multivariate_normal(np.zeros(d), cov, 3 * n)
    g = ClassGaussians(torch.from_numpy(feats), torch.from_numpy(labels), ridge=0.0)
    # The fitted shared covariance is the pooled within-class one; compare with scipy's
    # distance under that covariance, and the fit with the true one (4,000 per class).
    pooled = sum(np.cov(feats[labels == c].T, bias=True) * n for c in range(3)) / (3 * n)
    assert np.allclose(torch.linalg.inv(g.precision).numpy(), pooled, atol=1e-9)
    assert np.abs(pooled - cov).max() < 0.25 * np.abs(cov).max()
    x = rng.standard_normal((20, d)) * 4
    want = np.array([[mahalanobis(xi, means_c, np.linalg.inv(pooled)) ** 2 for means_c in g.means.numpy()]
                     for xi in x])
    assert np.allclose(g.distances(torch.from_numpy(x)).numpy(), want, rtol=1e-9)
    assert np.allclose(g.score(torch.from_numpy(x)).numpy(), want.min(1), rtol=1e-9)
    # With the pooled maximum-likelihood covariance, the mean squared distance of the
    # training points to their own class mean is exactly trace(I) = d: a check of the
    # centring and the covariance's normalization together.
    own = g.distances(torch.from_numpy(feats)).numpy()[np.arange(3 * n), labels]
    assert own.mean() == pytest.approx(d, rel=1e-9)


def test_energy_and_max_logit():
    logits = torch.randn(50, 10) * 5
    assert np.allclose(energy(logits).numpy(), -logsumexp(logits.double().numpy(), axis=1), rtol=1e-12)
    assert np.array_equal(max_logit(logits).numpy(), -np.max(logits.double().numpy(), axis=1))
    # A uniform shift of every logit shifts the energy, not the class probabilities.
    assert torch.allclose(energy(logits + 3.0), energy(logits) - 3.0)


def test_disagreement_is_zero_for_identical_members_and_the_std_otherwise():
    logits = torch.randn(30, 10)
    target = torch.randint(0, 10, (30,))
    assert torch.equal(disagreement([logits] * 4, target), torch.zeros(30, dtype=torch.float64))
    other = logits.clone()
    other[:, :] += torch.randn(30, 10)
    lp = torch.stack([m.double().log_softmax(1)[torch.arange(30), target] for m in (logits, other)])
    assert torch.allclose(disagreement([logits, other], target), (lp[0] - lp[1]).abs() / 2)


def test_grad_norm_of_a_linear_softmax_is_analytic():
    """For logits W x, d log p_t / dx = W_t - sum_c p_c W_c; a batch-norm model in training
    mode gives each sample the value it has alone (it runs in eval mode)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4, bias=False).double()
    x = torch.randn(8, 6, dtype=torch.float64)
    t = torch.randint(0, 4, (8,))
    p = (x @ lin.weight.T).softmax(1)
    want = (lin.weight[t] - p @ lin.weight).norm(dim=1)
    assert torch.allclose(grad_norm(lin, x, t), want.detach(), rtol=1e-12)

    bn = torch.nn.Sequential(torch.nn.BatchNorm1d(6), lin).double().train()
    bn[0].running_mean.fill_(0.3)
    alone = torch.cat([grad_norm(bn, x[i:i + 1], t[i:i + 1]) for i in range(8)])
    assert torch.allclose(grad_norm(bn, x, t), alone, rtol=1e-12) and bn.training
