"""Null distributions of the distribution metrics and their 99% departure thresholds."""
import json
import threading
import time

import numpy as np
import pytest

from optbench.metrics import departure_side
from optbench.referees import null as null_mod
from optbench.referees.null import (HEAD, NULL_SEED, NULL_SPLITS, SHIPPED_N, cached_null,
                                    departed, false_positive_rate, metric_draws, null_key, pool_features,
                                    shipped_path)


@pytest.fixture(scope="module")
def pool(referee):
    return pool_features(referee, NULL_SPLITS)


@pytest.mark.parametrize("n", SHIPPED_N)
def test_shipped_null_matches_a_recomputation(referee, pool, n, tmp_path, monkeypatch):
    data = json.loads(shipped_path("mnist", n).read_text())
    assert data["key"] == null_key(referee, n), "stale: run benchmarks/calibrate_null.py"
    again = metric_draws(referee, pool, n, HEAD, NULL_SEED)    # the first draws, recomputed
    assert set(again) == set(data["metrics"]) == set(data["head"])
    # Within a stated tolerance, not bit-identical: the file was made on another CPU, whose
    # float32 feature kernels round differently (an AMD EPYC runner differed by 1.6e-7
    # relative in FID, 1.5e-6 absolute in a KID of 0.008 whose draws span -0.9 to 2.6:
    # KID is a difference, so its error scales with the metric's range, not its value).
    # Tolerance: 1e-5 of the largest draw's size; a changed seed, split or formula moves
    # draws by a sizeable fraction of their spread.
    for metric, values in again.items():
        want = np.asarray(data["head"][metric])
        np.testing.assert_allclose(values, want, rtol=0, atol=1e-5 * np.abs(want).max() + 1e-12, err_msg=metric)
    # The referee reads the shipped file and neither computes nor caches anything.
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(null_mod, "_compute", lambda *a: pytest.fail("recomputed a shipped null"))
    assert cached_null(referee, n, draws=null_mod.NULL_DRAWS) == data["metrics"]
    assert not list(tmp_path.rglob("*.json"))


def test_kid_threshold_lies_above_the_mean_and_flags_few_real_sets(referee):
    null = cached_null(referee, 128, draws=null_mod.NULL_DRAWS)   # the shipped one (tests default to fewer draws)
    for space in referee.spaces:
        key = "kid" if space == referee.spaces[0] else f"kid@{space}"
        s = null[key]
        assert s["draws"] >= 500 and s["n"] == 128
        assert s["q99"] > s["mean"] + s["std"] and s["q01"] < s["mean"], key
    # Sets of real digits from outside the null pool: about 1% should be flagged.
    fpr = false_positive_rate(referee, null, 128, sets=100, seed=1)
    assert set(fpr) == {m for m in null if departure_side(m)}
    for key, rate in fpr.items():
        assert rate <= (0.05 if key.startswith("kid") else 0.10), (key, rate)


def test_departure_sides():
    null = {"kid": {"q01": -0.1, "q99": 0.2}, "precision@feature_ae": {"q01": 0.7, "q99": 0.95}}
    assert departed(null, "kid", 0.25) and not departed(null, "kid", 0.15) and not departed(null, "kid", -0.5)
    assert departed(null, "precision@feature_ae", 0.6) and not departed(null, "precision@feature_ae", 0.99)
    assert departed(null, "kid_std", 9.0) is None and departed(null, "fid", 1e9) is None


def test_null_is_cached_once_under_concurrency_and_keyed(referee, pool, tmp_path, monkeypatch):
    monkeypatch.setenv("OPTBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(null_mod, "pool_features", lambda *_: pool)   # extracted once, above
    calls = []
    real_compute = null_mod._compute

    def slow_compute(*args):
        calls.append(args)
        time.sleep(0.3)          # long enough for the other thread to find the lock taken
        return real_compute(*args)

    monkeypatch.setattr(null_mod, "_compute", slow_compute)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cached_null(referee, 24, draws=6, seed=3)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results[0] == results[1]
    (path,) = tmp_path.rglob("mnist_24_*.json")
    assert json.loads(path.read_text())["key"] == null_key(referee, 24, 6, 3)
    assert results[0]["kid"]["draws"] == 6 and results[0]["kid"]["n"] == 24
    assert cached_null(referee, 24, draws=6, seed=3) == results[0] and len(calls) == 1   # read back
    path.write_text("{ torn")    # a damaged entry is recomputed, not trusted
    assert cached_null(referee, 24, draws=6, seed=3) == results[0] and len(calls) == 2
    assert null_key(referee, 24, 6, 3) != null_key(referee, 24, 6, 4) != null_key(referee, 25, 6, 3)


def test_n_beyond_half_the_pool_is_refused(referee, pool):
    with pytest.raises(ValueError, match=r"n: expected 6\.\.1000"):
        metric_draws(referee, pool, 1500, 1, 0)
