"""Exactness of the Gaussian-mixture gold (optbench/gold/gmm.py, optbench/models/exact.py)
against independent computations: scipy's densities, torch.distributions with autograd,
Monte-Carlo estimates with tolerances from their standard errors, and analytic moments.
Nothing here compares the code with numbers it produced itself."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from optbench.domains import get_domain
from optbench.gold.gmm import GaussianMixture, MixtureReferee, random_mixture
from optbench.models.exact import BayesClassifier, ExactDiffusion, ExactNoisyPosterior, MixtureSampler


# -- the mixtures under test ---------------------------------------------------------------
def _reweighted(m: GaussianMixture, w) -> GaussianMixture:
    """The same components with unequal weights, so a weight mix-up cannot hide."""
    return GaussianMixture(torch.tensor(w, dtype=torch.float64), m.means, m.covs, m.classes, m.num_classes)


D2 = random_mixture(2, 3, 2, rank=2, seed=3, mean_scale=1.0, spread=(0.15, 0.5), floor=0.0)
D2W = _reweighted(D2, [0.05, 0.30, 0.10, 0.15, 0.25, 0.15])
D5 = random_mixture(5, 3, 2, rank=2, seed=5, mean_scale=1.0, spread=(0.2, 0.6), floor=0.05)  # thin slabs
D5W = _reweighted(D5, [0.25, 0.05, 0.2, 0.1, 0.3, 0.1])
GMM2 = get_domain("gmm2").mixture
MIXTURES = {"d2": D2, "d2w": D2W, "d5": D5, "d5w": D5W, "gmm2": GMM2}


@pytest.fixture(scope="module")
def gmm64():
    return get_domain("gmm64")


# -- independent references ----------------------------------------------------------------
def _params(m: GaussianMixture, abar: float = 1.0):
    """numpy weights, means, covariances (noised to abar by hand), classes."""
    w, mu, cov, cls = (t.detach().numpy().astype(np.float64) for t in (m.weights, m.means, m.covs, m.classes))
    mu = math.sqrt(abar) * mu
    cov = abar * cov + (1 - abar) * np.eye(m.dim)
    return w, mu, cov, cls.astype(int)


def ref_component_logpdf(m, x, abar=1.0):
    """(N, K) with scipy."""
    _, mu, cov, _ = _params(m, abar)
    return np.stack([stats.multivariate_normal(mu[k], cov[k]).logpdf(x) for k in range(len(mu))], 1).reshape(len(x), -1)


def ref_log_prob(m, x, y=None, abar=1.0):
    w, _, _, cls = _params(m, abar)
    lp = ref_component_logpdf(m, x, abar)
    if y is None:
        return logsumexp(np.log(w) + lp, axis=1)
    y = np.broadcast_to(np.asarray(y), (len(x),))
    out = np.empty(len(x))
    for c in np.unique(y):
        idx, rows = cls == c, y == c
        out[rows] = logsumexp(np.log(w[idx] / w[idx].sum()) + lp[rows][:, idx], axis=1)
    return out


def ref_class_log_posterior(m, x, abar=1.0):
    w, _, _, cls = _params(m, abar)
    joint = np.log(w) + ref_component_logpdf(m, x, abar)
    per_class = np.stack([logsumexp(joint[:, cls == c], axis=1) for c in range(m.num_classes)], 1)
    return per_class - logsumexp(joint, axis=1, keepdims=True)


def torch_ref_log_prob(m, x, y=None, abar=1.0):
    """log p_t(x) (or log p_t(x | y)) with torch.distributions, differentiable in x."""
    w, mu, cov, cls = (torch.from_numpy(a) for a in _params(m, abar))
    comp = torch.distributions.MultivariateNormal(mu, covariance_matrix=cov)
    joint = comp.log_prob(x[:, None, :]) + w.log()                      # (N, K)
    if y is not None:
        y = torch.as_tensor(y).reshape(-1, 1)
        keep = cls[None] == y
        mass = torch.stack([w[cls == c].sum() for c in range(m.num_classes)])[y.squeeze(1)]
        joint = torch.where(keep, joint - mass.log()[:, None], torch.tensor(-math.inf, dtype=joint.dtype))
    return joint.logsumexp(1)


def torch_ref_score(m, x, y=None, abar=1.0):
    x = x.detach().double().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(torch_ref_log_prob(m, x, y, abar).sum(), x)
    return g


def analytic_moments(m):
    w, mu, cov, _ = _params(m)
    mean = w @ mu
    second = np.einsum("k,kij->ij", w, cov + np.einsum("ki,kj->kij", mu, mu))
    return mean, second - np.outer(mean, mean)


def assert_moments(x, mean, cov, nse=5.0):
    """Empirical mean and covariance of x against analytic ones, within nse standard errors."""
    n = len(x)
    d = x - mean
    se_mean = d.std(0, ddof=1) / math.sqrt(n)
    prod = np.einsum("ni,nj->nij", d, d)
    se_cov = prod.std(0, ddof=1) / math.sqrt(n)
    emp_mean, emp_cov = x.mean(0), np.cov(x, rowvar=False)
    assert np.all(np.abs(emp_mean - mean) <= nse * se_mean), (emp_mean, mean, se_mean)
    assert np.all(np.abs(emp_cov - cov) <= nse * se_cov + 1e-12), (emp_cov, cov, se_cov)


def test_points(m, n=300, seed=0):
    """Draws of the mixture, its means, and points far from it."""
    x, _, _ = m.sample(n, np.random.default_rng([seed, 99]))
    far = np.random.default_rng([seed, 98]).normal(size=(20, m.dim)) * 3.0
    return np.concatenate([x, m.means.numpy(), far])


test_points.__test__ = False   # a helper, not a test


# -- 1. densities ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MIXTURES))
def test_log_prob_matches_scipy(name):
    m = MIXTURES[name]
    x = test_points(m)
    got = m.log_prob(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref_log_prob(m, x), rtol=1e-10, atol=1e-10)
    # class-conditional: one class for all rows, and one class per row
    for c in range(m.num_classes):
        np.testing.assert_allclose(m.log_prob(torch.from_numpy(x), c).numpy(), ref_log_prob(m, x, c),
                                   rtol=1e-10, atol=1e-10)
    y = np.random.default_rng(1).integers(0, m.num_classes, len(x))
    np.testing.assert_allclose(m.log_prob(torch.from_numpy(x), torch.from_numpy(y)).numpy(), ref_log_prob(m, x, y),
                               rtol=1e-10, atol=1e-10)
    # the component log-densities themselves
    np.testing.assert_allclose(m.component_log_pdf(torch.from_numpy(x)).numpy(), ref_component_logpdf(m, x),
                               rtol=1e-10, atol=1e-10)


# -- 2. scores -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MIXTURES))
def test_score_is_the_gradient_of_log_prob(name):
    m = MIXTURES[name]
    x = torch.from_numpy(test_points(m, n=200))
    y = torch.from_numpy(np.random.default_rng(2).integers(0, m.num_classes, len(x)))
    for labels in (None, y, 1):
        got = m.score(x, labels)
        # autograd of the library's own log_prob ...
        xg = x.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(m.log_prob(xg, labels).sum(), xg)
        # ... and of an independent torch.distributions density
        ref = torch_ref_score(m, x, labels)
        for want in (auto, ref):
            scale = float(want.abs().max())
            torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10 * scale)


# -- 3. the noised mixture: density and ideal noise prediction -------------------------------
def mc_eps(x0: np.ndarray, xt: np.ndarray, abar: float):
    """E[eps | x_t] by self-normalized importance weighting of prior draws x0, with its
    delta-method standard error and the effective sample size."""
    diff = xt[None] - math.sqrt(abar) * x0
    logw = -0.5 * (diff ** 2).sum(1) / (1 - abar)
    w = np.exp(logw - logw.max())
    eps = diff / math.sqrt(1 - abar)
    est = (w[:, None] * eps).sum(0) / w.sum()
    se = np.sqrt((w[:, None] ** 2 * (eps - est) ** 2).sum(0)) / w.sum()
    ess = w.sum() ** 2 / (w ** 2).sum()
    return est, se, ess


@pytest.mark.parametrize("name", ["d2w", "gmm2"])
def test_ideal_eps_matches_monte_carlo_posterior_mean(name):
    m = MIXTURES[name]
    rng = np.random.default_rng(3)
    x0, y0, _ = m.sample(400_000, rng)
    mu = m.means.numpy()
    for abar in (0.9, 0.5, 0.1):
        s = math.sqrt(abar)
        xts = np.stack([s * mu[0] + 0.4 * math.sqrt(1 - abar) * np.array([1.0, -0.5]),
                        s * 0.5 * (mu[1] + mu[2]),
                        s * mu[3],
                        np.zeros(2)])
        got = m.ideal_eps(torch.from_numpy(xts), abar).numpy()
        for xt, g in zip(xts, got):
            est, se, ess = mc_eps(x0, xt, abar)
            assert ess > 300, (abar, xt, ess)
            assert np.all(np.abs(g - est) <= 5 * se), (abar, xt, g, est, se)
        # class-conditional: E[eps | x_t, y = c] from class-c draws only
        c = 1
        xc = x0[y0 == c]
        got_c = m.ideal_eps(torch.from_numpy(xts[1:2]), abar, c).numpy()[0]
        est, se, ess = mc_eps(xc, xts[1], abar)
        assert ess > 300
        assert np.all(np.abs(got_c - est) <= 5 * se), (abar, got_c, est, se)


@pytest.mark.parametrize("name", ["d2w", "d5", "gmm2"])
def test_noised_log_prob_matches_scipy(name):
    m = MIXTURES[name]
    x = test_points(m, n=200)
    for abar in (0.999, 0.9, 0.5, 0.1, 0.001):
        mt = m.noised(abar)
        np.testing.assert_allclose(mt.log_prob(torch.from_numpy(x)).numpy(), ref_log_prob(m, x, abar=abar),
                                   rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(mt.log_prob(torch.from_numpy(x), 2).numpy(), ref_log_prob(m, x, 2, abar=abar),
                                   rtol=1e-10, atol=1e-10)
        # and the ideal eps is -sqrt(1 - abar) times the independent noised score
        ref = -math.sqrt(1 - abar) * torch_ref_score(m, torch.from_numpy(x), abar=abar)
        torch.testing.assert_close(m.ideal_eps(torch.from_numpy(x), abar), ref, rtol=1e-8,
                                   atol=1e-10 * float(ref.abs().max()))


# -- 4. the Bayes posterior ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["d2w", "gmm2"])
def test_class_posterior_matches_monte_carlo_frequencies(name):
    m = MIXTURES[name]
    x, y, _ = m.sample(400_000, np.random.default_rng(4))
    post = m.class_posterior(torch.from_numpy(x)).numpy()
    # coarse grid cells: given the points, labels are independent Bernoulli(p(c | x_i)), so
    # a cell's class count has mean sum_i p_ic and variance sum_i p_ic (1 - p_ic)
    edges = [np.quantile(x[:, j], np.linspace(0, 1, 13)) for j in range(2)]
    cell = np.digitize(x[:, 0], edges[0][1:-1]) * 100 + np.digitize(x[:, 1], edges[1][1:-1])
    worst, checked, informative = 0.0, 0, 0
    for key in np.unique(cell):
        rows = cell == key
        if rows.sum() < 200:
            continue
        for c in range(m.num_classes):
            p = post[rows, c]
            count, expect, var = (y[rows] == c).sum(), p.sum(), (p * (1 - p)).sum()
            worst = max(worst, abs(count - expect) / math.sqrt(var + 0.25))
            checked += 1
            informative += 0.05 < expect / rows.sum() < 0.95
    assert checked > 100 and informative > 10, (checked, informative)
    assert worst < 5.0, worst
    # small balls around query points (the 2,000 nearest draws): class counts against the
    # summed posterior there, including the boundaries between classes
    mu = m.means.numpy()
    for q in (mu[0], 0.5 * (mu[0] + mu[2]), 0.5 * (mu[1] + mu[4]), 0.5 * (mu[3] + mu[5])):
        near = np.argpartition(np.linalg.norm(x - q, axis=1), 2000)[:2000]
        p = post[near]
        count = np.bincount(y[near], minlength=m.num_classes)
        assert np.all(np.abs(count - p.sum(0)) <= 5 * np.sqrt((p * (1 - p)).sum(0) + 0.25)), (q, count, p.sum(0))


@pytest.mark.parametrize("name", list(MIXTURES))
def test_class_posterior_is_exp_of_log_posterior_and_normalized(name):
    m = MIXTURES[name]
    x = test_points(m)
    xt = torch.from_numpy(x)
    post, logpost = m.class_posterior(xt), m.class_log_posterior(xt)
    torch.testing.assert_close(post, logpost.exp(), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(post.sum(1), torch.ones(len(x), dtype=torch.float64), rtol=0, atol=1e-12)
    ref = ref_class_log_posterior(m, x)
    np.testing.assert_allclose(post.numpy(), np.exp(ref), rtol=1e-9, atol=1e-13)
    # in log space it stays exact far from the data, where the probabilities underflow
    far = np.random.default_rng(5).normal(size=(10, m.dim)) * 100.0
    ref_far = ref_class_log_posterior(m, far)
    got_far = m.class_log_posterior(torch.from_numpy(far)).numpy()
    assert np.all(np.isfinite(got_far))
    np.testing.assert_allclose(got_far, ref_far, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(logsumexp(got_far, axis=1), 0.0, atol=1e-9)
    # BayesClassifier is the same judge as a module
    got_mod = BayesClassifier.of(m)(xt).detach().numpy()
    np.testing.assert_allclose(got_mod, ref, rtol=1e-9, atol=1e-9)


# -- 5. sampling -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["d2w", "d5w", "gmm2"])
def test_sample_moments_components_and_classes(name):
    m = MIXTURES[name]
    n = 200_000
    x, y, comp = m.sample(n, np.random.default_rng(6))
    assert x.shape == (n, m.dim) and x.dtype == np.float64
    mean, cov = analytic_moments(m)
    assert_moments(x, mean, cov)
    w, mu, covs, cls = _params(m)
    # component frequencies against the weights (binomial standard error)
    freq = np.bincount(comp, minlength=len(w)) / n
    assert np.all(np.abs(freq - w) <= 5 * np.sqrt(w * (1 - w) / n)), (freq, w)
    assert np.array_equal(y, cls[comp])
    # each component is N(mu_k, Sigma_k)
    for k in range(len(w)):
        xk = x[comp == k]
        assert_moments(xk, mu[k], covs[k])
    # class-conditional draws: only class c, with the class's components in its weights
    for c in range(m.num_classes):
        xc, yc, kc = m.sample(20_000, np.random.default_rng([6, c]), y=c)
        assert np.all(yc == c) and np.all(cls[kc] == c)
        wc = np.where(cls == c, w, 0) / w[cls == c].sum()
        fc = np.bincount(kc, minlength=len(w)) / len(kc)
        assert np.all(np.abs(fc - wc) <= 5 * np.sqrt(wc * (1 - wc) / len(kc)) + 1e-12), (fc, wc)
        assert_moments(xc, wc @ mu, np.einsum("k,kij->ij", wc, covs + np.einsum("ki,kj->kij", mu, mu))
                       - np.outer(wc @ mu, wc @ mu))


# -- 6. the exact sampler module -------------------------------------------------------------
@pytest.mark.parametrize("name", ["d2w", "d5w", "gmm2"])
def test_mixture_sampler_module(name):
    m = MIXTURES[name]
    sampler = MixtureSampler.of(m)
    assert sampler.latent_dim == m.dim + 1
    n = 200_000
    z = torch.randn(n, m.dim + 1, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        x = sampler(z).double().numpy()
    mean, cov = analytic_moments(m)
    assert_moments(x, mean, cov)
    # which component made each output: the one that maps the whitened latents onto it
    w, mu, covs, _ = _params(m)
    chol = np.linalg.cholesky(covs)
    zw = z[:, :-1].double().numpy()
    resid = np.stack([np.abs(x - (mu[k] + zw @ chol[k].T)).max(1) for k in range(len(w))], 1)
    k_hat = resid.argmin(1)
    assert resid.min(1).max() < 1e-4 * (1 + np.abs(x).max())
    freq = np.bincount(k_hat, minlength=len(w)) / n
    assert np.all(np.abs(freq - w) <= 5 * np.sqrt(w * (1 - w) / n)), (freq, w)
    # the last latent picks the component monotonically (through the normal CDF)
    order = np.argsort(z[:, -1].numpy())
    assert np.all(np.diff(k_hat[order]) >= 0)


# -- 7. the exact diffusion model and noisy posterior ----------------------------------------
def test_exact_diffusion_and_noisy_posterior():
    m = D2W
    model = ExactDiffusion.of(m)
    # the schedule: DDPM's linear betas 1e-4 .. 0.02 over 1,000 steps (diffusers: float32)
    ref_abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    np.testing.assert_allclose(model.alphas_cumprod.numpy(), ref_abar, rtol=1e-5)
    assert model.config.num_class_embeds == m.num_classes + 1
    rng = np.random.default_rng(8)
    x = torch.from_numpy(rng.normal(size=(16, m.dim)) * 0.8)
    labels = torch.from_numpy(rng.integers(0, m.num_classes + 1, len(x)))
    labels[:2] = m.num_classes                             # some null labels for sure
    labels[2:4] = 0
    for t in (0, 300, 999, torch.tensor(500)):
        abar = float(model.alphas_cumprod[int(t)])
        out = model(x, t, class_labels=labels).sample
        assert out.dtype == torch.float64 and out.shape == x.shape
        for i in range(len(x)):
            y = None if int(labels[i]) == m.num_classes else int(labels[i])
            torch.testing.assert_close(out[i:i + 1], m.ideal_eps(x[i:i + 1], abar, y), rtol=1e-12, atol=1e-14)
            ref = -math.sqrt(1 - abar) * torch_ref_score(m, x[i:i + 1], y, abar)
            torch.testing.assert_close(out[i:i + 1], ref, rtol=1e-8, atol=1e-10)
        uncond = model(x, t).sample
        ref_u = -math.sqrt(1 - abar) * torch_ref_score(m, x, None, abar)
        torch.testing.assert_close(uncond, ref_u, rtol=1e-8, atol=1e-10)
        # the guidance code calls it in float32
        out32 = model(x.float(), t, class_labels=labels).sample
        assert out32.dtype == torch.float32
        torch.testing.assert_close(out32.double(), out, rtol=1e-4, atol=1e-5)

    post = ExactNoisyPosterior.of(m)
    for t in (0, 400, 999):
        abar = float(post.alphas_cumprod[t])
        tt = torch.full((len(x),), t)                      # as classifier guidance calls it
        got = post(x, tt)
        np.testing.assert_allclose(got.numpy(), ref_class_log_posterior(m, x.numpy(), abar), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(got, m.noised(abar).class_posterior(x).log(), rtol=1e-10, atol=1e-12)
        # gradient through it: against autograd of the independent density,
        # grad log p_t(y | x) = grad log p_t(x | y) - grad log p_t(x)
        y = labels.clamp(max=m.num_classes - 1)
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(post(xg, tt).gather(1, y[:, None]).sum(), xg)
        ref = torch_ref_score(m, x, y, abar) - torch_ref_score(m, x, None, abar)
        assert torch.isfinite(g).all() and float(g.abs().max()) > 0
        torch.testing.assert_close(g, ref, rtol=1e-7, atol=1e-9 * float(ref.abs().max()))
        xg32 = x.float().requires_grad_(True)
        (g32,) = torch.autograd.grad(post(xg32, tt).log_softmax(1).gather(1, y[:, None]).sum(), xg32)
        torch.testing.assert_close(g32.double(), ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))


# -- 8. the referee on real samples, noise, and modes ----------------------------------------
def _check_referee_on_real(ref: MixtureReferee, n: int, seed: int):
    m = ref.mixture
    x, y = ref.sample_true(n, np.random.default_rng([seed, 123]))
    out = ref.per_sample(x, y)
    assert set(out) | set(ref.set_metrics(x)) == set(ref.names)
    draws = ref.TYPICAL_DRAWS
    # atypical: 1% of real data, up to the binomial error and the bounds' own estimation error
    tol = 5 * math.sqrt(0.01 * 0.99 / n + 2 * 0.005 * 0.995 / draws)
    assert abs(float(out["gold_atypical"].mean()) - 0.01) <= tol, float(out["gold_atypical"].mean())
    # quantiles of real data are uniform: mean 1/2 (std 1/sqrt(12 n)), KS within its null
    q = out["gold_logp_q"].numpy()
    assert abs(q.mean() - 0.5) <= 5 * math.sqrt(1 / 12 / n + 1 / 12 / draws), q.mean()
    ks = ref.set_metrics(x)["gold_ks"]
    assert ks <= stats.kstwo.ppf(0.9999, n) + stats.kstwo.ppf(0.9999, draws), ks
    # the per-sample values against independent computations
    xd = x.double().numpy()
    post = np.exp(ref_class_log_posterior(m, xd))
    np.testing.assert_allclose(out["gold_prob"].numpy(), post[np.arange(n), y.numpy()], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(out["gold_conf"].numpy(), post.max(1), rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(out["gold_hit"].numpy(), (post.argmax(1) == y.numpy()).astype(float))
    _, mu, covs, _ = _params(m)
    maha = np.stack([np.sqrt(np.einsum("ni,ni->n", xd - mu[k], np.linalg.solve(covs[k], (xd - mu[k]).T).T))
                     for k in range(len(mu))], 1).min(1)
    np.testing.assert_allclose(out["gold_maha"].numpy(), maha, rtol=1e-8)
    # the atypical flag is exactly "outside the central 99% of real log-densities"
    lp = ref_log_prob(m, xd)
    lo, hi = np.quantile(ref.real_logp, [0.005, 0.995])
    np.testing.assert_array_equal(out["gold_atypical"].numpy(), ((lp < lo) | (lp > hi)).astype(float))
    return out


def test_referee_on_real_samples_gmm2():
    _check_referee_on_real(get_domain("gmm2").gold(), 20_000, seed=1)


def test_referee_gmm64_real_noise_and_modes(gmm64):
    ref = gmm64.gold()
    m = ref.mixture
    _check_referee_on_real(ref, 20_000, seed=2)
    # uniform noise in [-1, 1]^64 is off the data's thin slabs: all atypical (too unlikely)
    noise = torch.from_numpy(np.random.default_rng(9).uniform(-1, 1, (2000, m.dim)))
    target = torch.zeros(len(noise), dtype=torch.long)
    out = ref.per_sample(noise, target)
    assert float(out["gold_atypical"].mean()) >= 0.99
    assert float(out["gold_logp_q"].mean()) <= 0.01
    # a component mean: the highest density there is, yet atypical (the upper tail), because
    # no real sample in 64-d sits at a mode. Independent evidence from scipy: the mode's
    # log-density is above the 99.5% quantile of log p over fresh real draws (by about d/2).
    mean_x = m.means[:3].clone()
    lp_mode = ref_log_prob(m, mean_x.numpy())
    xs, _, _ = m.sample(20_000, np.random.default_rng(10))
    lp_real = ref_log_prob(m, xs)
    assert np.all(lp_mode > lp_real.max())
    assert np.all(lp_mode - np.median(lp_real) > 0.3 * m.dim)
    out = ref.per_sample(mean_x, m.classes[:3])
    np.testing.assert_array_equal(out["gold_atypical"].numpy(), 1.0)
    np.testing.assert_array_equal(out["gold_logp_q"].numpy(), 1.0)
    np.testing.assert_allclose(out["gold_maha"].numpy(), 0.0, atol=1e-9)
    np.testing.assert_allclose(out["gold_prob"].numpy(), 1.0, atol=1e-9)


# -- 9. the referee's null -------------------------------------------------------------------
def test_referee_null(gmm64):
    n, draws = 64, 200
    null = gmm64.gold().null(n, draws=draws)
    assert set(null) == set(MixtureReferee.names)
    for k, s in null.items():
        assert s["q01"] <= s["mean"] <= s["q99"], (k, s)
        assert s["n"] == n and s["draws"] == draws
    at = null["gold_atypical"]
    assert abs(at["q99"] - stats.binom.ppf(0.99, n, 0.01) / n) <= 1 / n + 1e-12, at
    # the mean over draws x n samples, and the spread of one set's mean, are binomial
    assert abs(at["mean"] - 0.01) <= 5 * math.sqrt(0.01 * 0.99 / (n * draws)), at
    assert abs(at["std"] / math.sqrt(0.01 * 0.99 / n) - 1) < 0.3, at
    lq = null["gold_logp_q"]
    assert abs(lq["mean"] - 0.5) <= 5 * math.sqrt(1 / 12 / (n * draws)), lq
    assert abs(lq["std"] / math.sqrt(1 / 12 / n) - 1) < 0.25, lq
