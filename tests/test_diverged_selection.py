"""Best-of-n and the quantilizer on pools with diverged members (a proxy that returns
NaN, a generator that emits inf): a diverged member is selected only when every
candidate diverged, the curve records how many diverged, and the per-sample means are
over finite selections. Checked against a direct count of subsets (scipy)."""
import math

import numpy as np
import pytest
import torch
from scipy.special import comb

import optbench.pressure.gan_sources as gan_sources
from optbench.models.checkpoints import load_model
from optbench.models.gan import generate, sample_latents
from optbench.proxies import as_proxy
from optbench.referees import Referee
from optbench.runner import compute_cell
from optbench.suite import CellSpec

POOL, N = 320, 20


class NaNOnConfident(torch.nn.Module):
    """proxy_mlp, but NaN logits wherever it is most sure: the members best-of-n wants."""

    def __init__(self, inner, cut):
        super().__init__()
        self.inner, self.cut = inner, cut

    def forward(self, x):
        out = self.inner(x)
        bad = out.softmax(1).amax(1) > self.cut
        return torch.where(bad[:, None], torch.full_like(out, float("nan")), out)


def _spec(source):
    settings = (("generator", "sampler_exact"), ("min_ess", 1), ("objective", "log_prob"), ("pool_size", POOL))
    return CellSpec("gmm2", "proxy_mlp", source, N, 0, settings)


def _pool():
    G = load_model("gmm2", "sampler_exact")
    return generate(G, sample_latents(POOL, seed=0, latent_dim=G.latent_dim))


@pytest.fixture(scope="module")
def nan_proxy():
    inner = load_model("gmm2", "proxy_mlp")
    with torch.no_grad():
        conf = inner(_pool()).softmax(1).amax(1)
    cut = float(conf.quantile(0.75))   # the top quarter of the pool by confidence returns NaN
    proxy = as_proxy(NaNOnConfident(inner, cut).eval(), "classifier")
    proxy.name = "proxy_mlp"
    with torch.no_grad():
        logits = proxy.model(_pool())
    return proxy, torch.isnan(logits).any(1).numpy(), logits


def _best_of_n_direct(probs_finite, diverged_count, n):
    """E[prob of the best of a random n-subset | not all diverged] and P(all diverged),
    by counting subsets: the best is the j-th lowest finite member when the subset holds
    it and no higher finite member (diverged members rank below all)."""
    vals = np.sort(probs_finite)
    F, D = len(vals), diverged_count
    total = comb(F + D, n, exact=True)
    w = np.array([comb(j + D, n - 1, exact=True) for j in range(F)], dtype=float) / total
    all_diverged = comb(D, n, exact=True) / total
    return float(w @ vals / w.sum()), all_diverged


def test_nan_proxy_members_are_never_preferred(nan_proxy):
    proxy, bad, logits = nan_proxy
    referee = Referee("gmm2", proxy)
    rows = compute_cell(_spec("best_of_n"), referee).rows
    D = int(bad.sum())
    assert D == pytest.approx(POOL / 4, abs=1) and all(r["pool_diverged"] == D for r in rows)
    probs = logits.softmax(1).double().numpy()[~bad]
    for r in rows:
        n = r["n"]
        mean = np.mean([_best_of_n_direct(probs[:, t], D, n)[0] for t in range(probs.shape[1])])
        lost = _best_of_n_direct(probs[:, 0], D, n)[1]
        assert r["diverged_frac"] == pytest.approx(lost, abs=1e-12), n
        assert r["proxy_prob"] == pytest.approx(mean, rel=1e-9), n
    # Unguarded, NaN sorts highest: the top levels selected only diverged members.
    assert rows[-1]["diverged_frac"] == 0 and math.isfinite(rows[-1]["proxy_prob"])
    assert rows[-1]["proxy_prob"] < 1   # the finite best, not a NaN


def test_quantilizer_top_k_skips_nan_members(nan_proxy):
    proxy, bad, logits = nan_proxy
    rows = compute_cell(_spec("quantilizer"), Referee("gmm2", proxy)).rows
    probs = logits.softmax(1).double().numpy()[~bad]
    for r in rows:
        k = round(POOL / r["inv_q"])
        if k > len(probs):   # the top k then holds diverged members: their share is recorded
            assert r["diverged_frac"] == pytest.approx((k - len(probs)) / k)
            continue
        top = np.sort(probs, axis=0)[-k:].mean(0).mean()
        assert r["diverged_frac"] == 0 and r["proxy_prob"] == pytest.approx(top, rel=1e-9), k
        assert r["n_finite"] == N   # the drawn set holds no diverged member


def test_a_generator_emitting_inf_is_selected_last(monkeypatch):
    G = load_model("gmm2", "sampler_exact")

    class InfSometimes(torch.nn.Module):
        latent_dim = G.latent_dim

        def forward(self, z):
            x = G(z)
            return torch.where((z[:, :1] > 0.5), torch.full_like(x, float("inf")), x)

    monkeypatch.setattr(gan_sources, "_generator", lambda ctx, s: InfSometimes())
    rows = compute_cell(_spec("best_of_n"), Referee("gmm2", "proxy_mlp")).rows
    z = sample_latents(POOL, seed=0, latent_dim=G.latent_dim)
    D = int((z[:, 0] > 0.5).sum())
    assert 0 < D < POOL and all(r["pool_diverged"] == D for r in rows)
    for r in rows:
        lost = comb(D, r["n"], exact=True) / comb(POOL, r["n"], exact=True)
        assert r["diverged_frac"] == pytest.approx(lost, abs=1e-12)
        assert math.isfinite(r["proxy_prob"]) and math.isfinite(r["judge_prob"])


def test_pools_without_diverged_members_select_exactly_as_before():
    """Ranking diverged members lowest changes nothing when none diverged: the weights of
    best-of-n and the quantilizer, and the weighted means, equal the plain computation
    bit for bit (scores with -inf, probability 0, and ties)."""
    from optbench.pressure.selection import (best_of_n_pool_weights, diverged_lowest, diverged_members,
                                             quantile_weights)
    from optbench.runner import weighted_pool_means
    rng = np.random.default_rng(0)
    for trial in range(20):
        N = int(rng.integers(5, 200))
        scores = np.round(rng.normal(size=(3, N)), 1)          # ties
        scores[:, rng.integers(0, N, 3)] = -np.inf              # probability 0: legitimate
        diverged = diverged_members(scores, np.ones(N, bool))
        assert not diverged.any()
        ranked = diverged_lowest(scores, diverged)
        for t in range(3):
            for n in (1, 2, N // 2 or 1, N):
                assert np.array_equal(best_of_n_pool_weights(ranked[t], n), best_of_n_pool_weights(scores[t], n))
            assert np.array_equal(quantile_weights(ranked[t], 3.0), quantile_weights(scores[t], 3.0))
        values = [{"m": torch.from_numpy(rng.random(N))} for _ in range(3)]
        W = np.stack([best_of_n_pool_weights(scores[t], 2) for t in range(3)])
        plain = sum(float(W[t] @ values[t]["m"].numpy()) for t in range(3)) / 3
        assert weighted_pool_means((values, torch.ones(N, dtype=torch.bool)), W)["m"] == plain
