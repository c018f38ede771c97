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


def _cell(source, proxy="proxy_cnn"):
    return CellSpec("mnist", proxy, source, N, 0, (("generator", "gan_generator"),
                                                    ("objective", "log_prob"), ("pool_size", POOL)))


def _pool_probs():
    pool = generate(load_model("mnist", "gan_generator"), sample_latents(POOL, seed=0))
    with torch.no_grad():
        return load_model("mnist", "proxy_cnn")(pool).softmax(1).double().numpy()


def test_best_of_n_cell_against_direct_computation(referee):
    rows = compute_cell(_cell("best_of_n"), referee).rows
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


def test_quantilizer_cell_against_direct_computation(referee):
    rows = compute_cell(_cell("quantilizer"), referee).rows
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
