"""GAN pressure sources: the frozen discriminator stays frozen, per-sample seeds hold,
ascent raises the score it ascends, training is reproducible, and the pool estimator
matches direct computations."""
import math

import numpy as np
import pytest
import torch

from optbench.models.gan import DCGANDiscriminator, DCGANGenerator, sample_latents
from optbench.pressure import SOURCES, Context
from optbench.pressure.generator import generator_finetune, latent_ascent
from optbench.proxies import ClassifierProxy, RealnessProxy, as_proxy
from optbench.training.gan import GAN_RECIPE, train_gan
from optbench.pressure.selection import (best_of_n_mean, best_of_n_pool_weights, quantile_weights,
                                         quantilizer_mean, selection_levels, subpool_best)


def _small_gan(seed=0):
    torch.manual_seed(seed)
    G = DCGANGenerator(latent_dim=8, width=8).eval().requires_grad_(False)
    # Running statistics away from the defaults, as after training.
    for m in G.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    D = DCGANDiscriminator(width=8).eval().requires_grad_(False)
    return G, D


def test_finetune_leaves_discriminator_bit_identical_and_moves_generator():
    G, D = _small_gan()
    d_before = {k: v.clone() for k, v in D.state_dict().items()}
    g_before = {k: v.clone() for k, v in G.state_dict().items()}
    z = sample_latents(16, seed=0, latent_dim=8)
    s = SOURCES["generator_finetune"].defaults(lr=1e-3, batch_size=8, objective="log_prob")
    levels = list(generator_finetune(Context.of(D, "mnist"), G, z, torch.zeros(16, dtype=torch.long), [0, 5, 20], s))
    for k, v in D.state_dict().items():
        assert torch.equal(v, d_before[k]), k            # bit-identical, not merely close
    for k, v in G.state_dict().items():                  # the original G is not touched either
        assert torch.equal(v, g_before[k]), k
    assert levels[0].values["param_l2"] == 0.0
    assert levels[-1].values["param_l2"] > levels[1].values["param_l2"] > 0
    # It did what it was asked: the frozen D likes the last outputs more than the first.
    assert D(levels[-1].x).mean() > D(levels[0].x).mean()


@pytest.mark.kernels
def test_latent_ascent_per_sample_and_raises_score():
    G, D = _small_gan(1)
    z = sample_latents(12, seed=3, latent_dim=8)
    assert torch.equal(sample_latents(5, seed=3, latent_dim=8), z[:5])   # per-sample seeds
    s, ctx = SOURCES["latent_ascent"].defaults(lr=0.05, objective="logit"), Context.of(D, "mnist")
    batch = list(latent_ascent(ctx, G, z, None, [0, 4, 16], s))
    alone = list(latent_ascent(ctx, G, z[7:8], None, [0, 4, 16], s))
    for b, a in zip(batch, alone):
        assert torch.equal(b.x[7:8], a.x)   # bit-identical: fixed-shape chunks
    assert batch[0].values["latent_l2"] == 0
    scores = [float(D(level.x).mean()) for level in batch]
    assert scores[2] > scores[1] > scores[0]


def test_proxy_score_realness_objectives():
    _, D = _small_gan()
    x = torch.rand(4, 1, 28, 28)
    proxy = as_proxy(D)
    assert isinstance(proxy, RealnessProxy) and not proxy.has_classes
    torch.testing.assert_close(proxy.score(D(x), None, "logit"), D(x))
    torch.testing.assert_close(proxy.score(D(x), None, "log_prob"),
                               -torch.nn.functional.softplus(-D(x)))   # the non-saturating loss
    torch.testing.assert_close(proxy.prob(D(x), None), 1 / (1 + torch.exp(-D(x))))


def test_classifier_proxy_reads_out_like_softmax():
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0))
    target = torch.arange(6)
    proxy = ClassifierProxy(torch.nn.Identity())
    p = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    torch.testing.assert_close(proxy.prob(logits, target), p[torch.arange(6), target])
    torch.testing.assert_close(proxy.score(logits, target, "log_prob"), p[torch.arange(6), target].log())
    r = proxy.readout(logits, target)
    assert torch.equal(r["hit"], logits.argmax(1) == target)
    assert proxy.selection_scores(logits, "logit").shape == (10, 6)


def test_gan_training_is_reproducible():
    x = torch.rand(64, 1, 28, 28)
    r = {**GAN_RECIPE, "steps": 3, "batch_size": 8, "g_width": 8, "d_width": 8, "latent_dim": 8}
    G1, D1, _ = train_gan(x, r, log=lambda *_: None)
    G2, D2, _ = train_gan(x, r, log=lambda *_: None)
    for a, b in zip([*G1.state_dict().values(), *D1.state_dict().values()],
                    [*G2.state_dict().values(), *D2.state_dict().values()]):
        assert torch.equal(a, b)


def test_selection_levels_and_weights_match_direct_estimates():
    levels = selection_levels(1000)
    assert levels[0] == 1 and levels[-1] == 1000 and levels == sorted(set(levels))
    rng = np.random.default_rng(0)
    scores, values = rng.normal(size=300), rng.random(300)
    for n in (1, 3, 17, 300):
        assert best_of_n_pool_weights(scores, n) @ values == pytest.approx(best_of_n_mean(scores, values, n))
    assert best_of_n_pool_weights(scores, 1) @ values == pytest.approx(values.mean())   # best of 1 = mean
    assert best_of_n_pool_weights(scores, 300) @ values == pytest.approx(values[np.argmax(scores)])
    for inv_q in (1, 2, 7.5, 300):
        assert quantile_weights(scores, inv_q) @ values == pytest.approx(
            quantilizer_mean(scores, values, 1 / inv_q))


def test_subpool_best_is_an_exact_draw_of_best_of_n():
    """Each sub-pool's winner among its first n is a best-of-n draw: the mean over many
    sub-pools approaches E[max of n standard normals] (scipy quadrature)."""
    from scipy import integrate, stats
    rng = np.random.default_rng(1)
    rows, size, n = 20000, 8, 5
    scores = rng.normal(size=(rows, size))
    idx = subpool_best(scores, n, size)
    drawn = scores.reshape(-1)[idx]
    exact = integrate.quad(lambda x: x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1),
                           -np.inf, np.inf)[0]
    assert drawn.mean() == pytest.approx(exact, abs=4 * drawn.std() / math.sqrt(rows))
    assert np.all(idx // size == np.arange(rows))            # one winner from each sub-pool
    assert np.all(idx % size < n)                            # among its first n members


def _fake_cells(law_fn, distance, source, seeds=4, noise=0.01):
    rng = np.random.default_rng(7)
    cells = []
    d = np.r_[0.0, np.geomspace(0.05, 3, 14)]
    for s in range(seeds):
        judge = 0.1 + law_fn(np.maximum(d, 1e-12)) + rng.normal(0, noise, len(d))
        judge[0] = 0.1
        rows = [{distance: float(di), "judge_prob": float(j), "proxy_prob": float(min(1, di))}
                for di, j in zip(d, judge)]
        cells.append({"spec": {"label": source, "source": source, "proxy": "p", "domain": "mnist",
                               "n_samples": 10, "settings": {}, "knob": "n", "seed": s},
                      "curve": {"rows": rows, "baseline": {}}})
    return cells


def test_goodhart_fits_recover_law_with_bootstrap_over_seeds(tmp_path):
    from optbench.report.goodhart import fit_curves, fits_figure, fits_markdown
    a, b = 0.6, 0.25
    cells = _fake_cells(lambda d: d * (a - b * d), "sqrt_kl", "best_of_n")
    (row,) = fit_curves(cells, n_boot=100)
    assert row["law"] == "best_of_n" and not row["poor"]
    assert row["a_lo"] <= a <= row["a_hi"] and row["b_lo"] <= b <= row["b_hi"]
    assert row["peak_d"] == pytest.approx(a / (2 * b), rel=0.1)
    # A curve that is not the law (a step) is flagged as a poor fit.
    step = _fake_cells(lambda d: 0.5 * (d > 1.0), "latent_l2", "latent_ascent")
    (bad,) = fit_curves(step, n_boot=20)
    assert bad["law"] == "rl_kl" and bad["poor"]
    text = fits_markdown([row, bad])
    assert text.count("poor fit: see the residual") == 1 and text.count("\n| ") == 2
    fits_figure(cells + step, [row, bad], tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 10_000
