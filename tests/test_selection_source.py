"""Best-of-n and quantilizer cells end to end: the pool estimator against direct
computations with the shipped proxy and generator."""
import math

import numpy as np
import pytest
import torch

from optbench.models.checkpoints import load_model
from optbench.models.gan import generate, sample_latents
from optbench.referees import Referee
from optbench.runner import compute_cell
from optbench.suite import CellSpec

POOL, N = 640, 20


@pytest.fixture(scope="module")
def referee():
    return Referee("mnist", "proxy_cnn")


def _cell(source, proxy="proxy_cnn", min_ess=1):
    """min_ess = 1 reports every level, so the estimator is checked up to n = pool."""
    return CellSpec("mnist", proxy, source, N, 0, (("generator", "gan_generator"), ("min_ess", min_ess),
                                                    ("objective", "log_prob"), ("pool_size", POOL)))


@pytest.fixture(scope="module")
def bon_rows(referee):
    return compute_cell(_cell("best_of_n"), referee).rows


@pytest.fixture(scope="module")
def quantilizer_rows(referee):
    return compute_cell(_cell("quantilizer"), referee).rows


def _pool_probs():
    pool = generate(load_model("mnist", "gan_generator"), sample_latents(POOL, seed=0))
    with torch.no_grad():
        return load_model("mnist", "proxy_cnn")(pool).softmax(1).double().numpy()


def test_best_of_n_cell_against_direct_computation(bon_rows):
    rows = bon_rows
    probs = _pool_probs()
    ns = [r["n"] for r in rows]
    assert ns[0] == 1 and ns[-1] == POOL
    # n = 1 is the pool mean; n = N is each class's best sample (classes balanced).
    assert rows[0]["proxy_prob"] == pytest.approx(probs.mean(0).mean(), abs=1e-9)
    assert rows[-1]["proxy_prob"] == pytest.approx(probs.max(0).mean(), abs=1e-9)
    # The expected best of n by the proxy's own score can only rise with n.
    assert all(b["proxy_prob"] >= a["proxy_prob"] - 1e-12 for a, b in zip(rows, rows[1:]))
    for r in rows:   # KL bound and exact sub-pool draws up to n = pool / samples
        assert r["kl"] == pytest.approx(math.log(r["n"]) - (r["n"] - 1) / r["n"])
        assert math.isfinite(r["kid"]) == (r["n"] <= POOL // N)


def test_quantilizer_cell_against_direct_computation(quantilizer_rows):
    rows = quantilizer_rows
    probs = _pool_probs()
    ks = [round(POOL / r["inv_q"]) for r in rows]
    assert ks[0] == POOL and ks[-1] == 1 and ks == sorted(set(ks), reverse=True)   # distinct selections
    for r, k in zip(rows, ks):
        top = np.sort(probs, axis=0)[-k:]     # per class: the top-k probabilities
        assert r["proxy_prob"] == pytest.approx(top.mean(0).mean(), abs=1e-9)
        assert r["kl"] == pytest.approx(math.log(POOL / k))   # uniform on k of N: KL = log(N / k)


def test_best_of_n_against_discriminator_ranks_by_d(referee):
    ref_d = Referee("mnist", "gan_discriminator")
    rows = compute_cell(_cell("best_of_n", "gan_discriminator"), ref_d).rows
    pool = generate(load_model("mnist", "gan_generator"), sample_latents(POOL, seed=0))
    with torch.no_grad():
        d = torch.sigmoid(load_model("mnist", "gan_discriminator")(pool)).double().numpy()
    assert rows[0]["proxy_prob"] == pytest.approx(d.mean(), abs=1e-9)
    assert rows[-1]["proxy_prob"] == pytest.approx(d.max(), abs=1e-9)
    assert all(math.isnan(r["judge_agree"]) for r in rows)   # no classes to agree on


PER_SAMPLE = ("proxy_prob", "proxy_logit", "proxy_hit", "judge_prob", "judge_hit", "judge_conf",
              "judge_bncnn_prob", "gap")


@pytest.mark.parametrize("source, knob", [("best_of_n", "n"), ("quantilizer", "inv_q")])
def test_levels_resting_on_few_samples_are_blanked(referee, bon_rows, quantilizer_rows, source, knob):
    """ESS = 1 / sum w^2 of the selection weights: best-of-n's against a brute-force
    enumeration is in test_selection_and_fits.py; here, levels below min_ess (default 32)
    report per-sample metrics as NaN and keep the knob, KL and ESS."""
    min_ess = 32
    rows = compute_cell(_cell(source, min_ess=min_ess), referee).rows
    full = bon_rows if source == "best_of_n" else quantilizer_rows   # min_ess = 1
    assert [r[knob] for r in rows] == [r[knob] for r in full]
    assert rows[0]["ess"] == pytest.approx(POOL)                 # n = 1, q = 1: the whole pool
    assert rows[-1]["ess"] == pytest.approx(1)                   # n = N, q = 1/N: one sample
    blanked = [r for r in rows if r["ess"] < min_ess]
    kept = [r for r in rows if r["ess"] >= min_ess]
    assert blanked and kept
    for r, f in zip(rows, full):
        assert r["ess"] == f["ess"] and r["kl"] == f["kl"] and math.isfinite(r[knob])
        for key in PER_SAMPLE:
            if r["ess"] < min_ess:
                assert math.isnan(r[key]), (r[knob], key)
            else:
                assert r[key] == f[key], (r[knob], key)
    # Levels where each target keeps the best of n <= pool / samples distinct samples
    # (best-of-n) keep their set metrics; the blanking only touches per-sample means.
    for r, f in zip(rows, full):
        assert (r["kid"] == f["kid"]) or (math.isnan(r["kid"]) and math.isnan(f["kid"]))


def test_a_streamed_pool_gives_the_in_memory_pools_numbers(monkeypatch):
    """A pool above IN_MEMORY is generated chunk by chunk and its selected members made
    again from their latents (pressure/pool.py): the same outputs, bit for bit, and the
    same exact best-of-n means, up to the float32 its per-sample values are kept in
    (gmm2's exact sampler and gold referee: seconds)."""
    import optbench.pressure.pool as pool
    gmm = Referee("gmm2", "proxy_mlp")
    settings = (("generator", "sampler_exact"), ("min_ess", 1), ("objective", "log_prob"), ("pool_size", POOL))
    spec = CellSpec("gmm2", "proxy_mlp", "best_of_n", N, 0, settings)
    in_memory = compute_cell(spec, gmm)
    monkeypatch.setattr(pool, "IN_MEMORY", 100)
    monkeypatch.setattr(pool, "CHUNK", 96)        # 640 = 6 chunks of 96 and one of 64
    streamed = compute_cell(spec, gmm)
    assert torch.equal(streamed.snapshots, in_memory.snapshots)
    for ours, theirs in zip(streamed.rows, in_memory.rows, strict=True):
        for key in ("proxy_prob", "judge_prob", "gold_atypical", "gold_prob", "gold_logp_q"):
            a, b = ours[key], theirs[key]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-5, abs=1e-6), (key, a, b)
        # The set metrics see the selected outputs themselves: identical, so equal exactly.
        assert np.array_equal([ours["kid"], ours["gold_ks"]], [theirs["kid"], theirs["gold_ks"]], equal_nan=True)
