"""Speed of best-of-n over every n from one pool: the order-statistics estimator (one
sort, then a weight vector per n) against Monte-Carlo resampling (draw n of the pool R
times per n), and where a best-of-n cell spends its time (generating the pool, scoring
it with the proxy and the judges, estimating).

    .venv/bin/python benchmarks/speed_selection.py [--threads 1] [--pool 16384] [--resamples 1000]

Prints seconds per stage and the resampling estimate's error against the exact one."""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from optbench.models.checkpoints import load_model
from optbench.models.gan import generate, sample_latents
from optbench.pressure.selection import best_of_n_pool_weights, selection_levels
from optbench.referees import Referee
from optbench.workers import setup_torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pool", type=int, default=16384)
    ap.add_argument("--resamples", type=int, default=1000)
    a = ap.parse_args()
    setup_torch(a.threads)
    G = load_model("mnist", "gan_generator")
    referee = Referee("mnist", "proxy_cnn")
    t0 = time.perf_counter()
    pool = generate(G, sample_latents(a.pool, seed=0))
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits = referee.logits(pool)
    t_score = time.perf_counter() - t0
    scores = logits["proxy"].log_softmax(1)[:, 3].double().numpy()
    judge = referee.per_sample(logits, pool, torch.full((a.pool,), 3))["judge_prob"].numpy()
    levels = selection_levels(a.pool)
    t0 = time.perf_counter()
    exact = [best_of_n_pool_weights(scores, n) @ judge for n in levels]
    t_exact = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    mc = []
    for n in levels:
        picks = [rng.choice(a.pool, n, replace=False) for _ in range(a.resamples)]
        mc.append(np.mean([judge[p[np.argmax(scores[p])]] for p in picks]))
    t_mc = time.perf_counter() - t0
    err = np.abs(np.array(mc) - np.array(exact))
    print(f"pool {a.pool}, {len(levels)} values of n (1..{a.pool}), {a.threads} thread(s)")
    print(f"  generate the pool          {t_gen:8.2f} s")
    print(f"  proxy + 3 judges on pool   {t_score:8.2f} s")
    print(f"  exact estimator, all n     {t_exact:8.3f} s")
    print(f"  resampling x{a.resamples}, all n   {t_mc:8.2f} s  ({t_mc / t_exact:.0f}x slower; "
          f"max |error| {err.max():.4f}, mean {err.mean():.4f})")


if __name__ == "__main__":
    main()
