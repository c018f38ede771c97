"""What the top of a million look like: the pool of `benchmarks/million.toml`'s MNIST
cells (the shipped DCGAN, latents (seed, i), i < 2^20) ranked by the shipped proxy for
each target class, and the members at ranks 1-10 and 91-100 drawn with the judges'
(the domain's judge ensemble) probability of that class under each (README, finding 12).

    .venv/bin/python benchmarks/top_of_million.py [--pool 1048576] [--seed 0]
        [--out results/million/plots/top_of_million_mnist.png]

The pool is streamed exactly as the cells stream it (optbench/pressure/pool.py) and
scored by the same function, so rank 1 here is the cell's top 1 (best-of-n at n = N and
the quantilizer at k = 1). About 10 minutes of one core for 2^20."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from optbench.models.checkpoints import load_model  # noqa: E402
from optbench.pressure.gan_sources import pool_scores  # noqa: E402
from optbench.pressure.pool import GeneratorPool  # noqa: E402
from optbench.proxies import as_proxy  # noqa: E402
from optbench.referees import Referee  # noqa: E402
from optbench.workers import setup_torch  # noqa: E402

RANKS = list(range(1, 11)) + list(range(91, 101))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pool", type=int, default=2 ** 20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/million/plots/top_of_million_mnist.png")
    a = p.parse_args()
    setup_torch(a.threads)
    referee = Referee("mnist", "proxy_cnn")
    proxy = as_proxy(load_model("mnist", "proxy_cnn"))
    pool = GeneratorPool(load_model("mnist", "gan_generator"), a.pool, a.seed, torch.device("cpu"))
    # One row of log-probabilities per class, as the quantilizer ranks them.
    scores, _ = pool_scores(proxy, pool, "log_prob")   # diverged members ranked lowest, as in the cells
    classes = len(scores)
    # Best first, ties broken as the cells break them (optbench/pressure/selection.py: a
    # stable ascending sort, so the last index of a tie ranks highest).
    order = np.argsort(scores, axis=1, kind="stable")[:, ::-1][:, :100]   # (classes, 100)
    # float32 log-probabilities saturate at 0.0: members tied at the top are ones the proxy
    # cannot rank, and their order is the pool's (random) order.
    tied_at_top = (scores == scores.max(1, keepdims=True)).sum(1)
    picked = order[:, [r - 1 for r in RANKS]]
    images = pool.rows(picked.reshape(-1)).reshape(classes, len(RANKS), *pool.rows([0]).shape[1:])
    with torch.no_grad():
        # The judges' ensemble, as the referee reads judge_prob (the domain's `ensemble`).
        judge_probs = torch.stack([referee.judges[name](images.flatten(0, 1)).softmax(1)
                                   for name in referee.ensemble]).mean(0)
    target = torch.arange(classes).repeat_interleave(len(RANKS))
    judged = judge_probs[torch.arange(len(target)), target].reshape(classes, len(RANKS))
    proxy_prob = np.exp(np.take_along_axis(scores, picked, 1))

    fig, axes = plt.subplots(classes, len(RANKS), figsize=(len(RANKS) * 0.62 + 0.8, classes * 0.78 + 0.9))
    for c in range(classes):
        for j, rank in enumerate(RANKS):
            ax = axes[c, j]
            ax.imshow(images[c, j, 0].clamp(0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{judged[c, j]:.2f}", fontsize=6, pad=1,
                         color="black" if judged[c, j] >= 0.5 else "crimson")
            if c == 0:
                ax.text(0.5, 1.55, f"#{rank}", transform=ax.transAxes, ha="center", fontsize=7)
        axes[c, 0].set_ylabel(f"class {c}", fontsize=7)
    fig.suptitle(f"Top of {a.pool:,} DCGAN samples by proxy_cnn's log-probability, per class (rows): "
                 f"ranks 1-10 and 91-100;\nabove each, the judges' mean probability of the class "
                 f"(red below 0.5). Seed {a.seed}.", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    summary = {"pool": a.pool, "seed": a.seed, "ranks": RANKS,
               "judge_prob_by_class": judged.tolist(), "proxy_prob_by_class": proxy_prob.tolist(),
               "pool_index_by_class": picked.tolist(), "tied_at_top_by_class": tied_at_top.tolist(),
               "top_score_by_class": scores.max(1).tolist(),
               "judges_mean": {"top 1": float(judged[:, 0].mean()), "ranks 1-10": float(judged[:, :10].mean()),
                               "ranks 91-100": float(judged[:, 10:].mean())},
               "judged_below_half": {"top 1": int((judged[:, 0] < 0.5).sum()),
                                     "ranks 1-10": int((judged[:, :10] < 0.5).sum()),
                                     "ranks 91-100": int((judged[:, 10:] < 0.5).sum())}}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in ("judges_mean", "judged_below_half", "tied_at_top_by_class")}, indent=1))


if __name__ == "__main__":
    main()
