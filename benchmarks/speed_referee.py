"""What one `Referee.evaluate` on 128 samples costs at 1 thread: in total (every feature
space), with one feature space at a time, and its parts; and the two-sample test's
linear discriminant against the logistic regression it replaced, on the same features.
Repeats are interleaved (every configuration once per round) and the median is reported,
so load from other processes hits all configurations alike.

    .venv/bin/python benchmarks/speed_referee.py [--rounds 7]
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/speed_referee.py   # numpy/scipy at 1 thread too

torch runs at 1 thread; numpy's and scipy's BLAS keep their default (all cores) unless
OPENBLAS_NUM_THREADS says otherwise, as in `optbench run --threads 1`. That matters for
the old logistic-regression c2st only: the new code computes in torch. Run with PYTHONPATH
pointing at an older checkout to time its `evaluate` (total only).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from optbench.domains import get_domain
from optbench.referees import Referee
from optbench.referees.distribution import c2st_accuracy

N = 128


def logistic_c2st(real: torch.Tensor, fake: torch.Tensor, seed: int = 0) -> float:
    """The former c2st: 5-fold accuracy of a standardized logistic regression (C = 0.1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake))
    r = real[rng.permutation(len(real))[:n]].double().numpy()
    f = fake[rng.permutation(len(fake))[:n]].double().numpy()
    x, y = np.concatenate([r, f]), np.r_[np.zeros(n), np.ones(n)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    return float(cross_val_score(clf, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed)).mean())


def inputs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Real test digits, and the same digits with pixel noise (what outputs that left the
    data look like to the metrics: separable, so the classifiers converge differently)."""
    x, y = get_domain("mnist").load_split("test")
    x, y = x[:N], y[:N]
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    return {"real": (x, y), "noisy": (noisy, y)}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    rounds = ap.parse_args().rounds
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    full = Referee("mnist", "proxy_cnn")
    evaluate, c2st = {}, {}
    for kind, (x, y) in inputs().items():
        evaluate[f"evaluate, all spaces [{kind}]"] = lambda r=full, x=x, y=y: r.evaluate(x, y, x)
        if not hasattr(full, "spaces"):       # an older checkout: one space, total only
            continue
        from optbench.referees.distribution import distribution_metrics
        for space in full.spaces:
            one = Referee("mnist", "proxy_cnn", features=(space,))
            evaluate[f"evaluate, only {space} [{kind}]"] = lambda r=one, x=x, y=y: r.evaluate(x, y, x)
        feats = full.features(x)
        evaluate[f"  forward passes: logits + features [{kind}]"] = lambda x=x: full._forward(x)
        for space in full.spaces:
            evaluate[f"  distribution metrics in {space} [{kind}]"] = (
                lambda s=space, f=feats: distribution_metrics(full.references[s], f[s]))
            ref = full.references[space].feats
            c2st[f"c2st LDA in {space} [{kind}]"] = lambda ref=ref, f=feats[space]: c2st_accuracy(ref, f)
            c2st[f"c2st logistic (old) in {space} [{kind}]"] = lambda ref=ref, f=feats[space]: logistic_c2st(ref, f)
    # Two groups, each interleaved: the old c2st's BLAS threads keep spinning after a call
    # and would slow whatever ran next.
    for jobs in (evaluate, c2st):
        for fn in jobs.values():    # warm-up: KID's subset draws are cached per batch size
            fn()
        times = {name: [] for name in jobs}
        for _ in range(rounds):
            for name, fn in jobs.items():
                times[name].append(timed(fn))
        print(f"median of {rounds} interleaved rounds, {N} samples, torch at 1 thread")
        for name, t in times.items():
            print(f"{statistics.median(t) * 1e3:8.0f} ms  {name}")

if __name__ == "__main__":
    main()
