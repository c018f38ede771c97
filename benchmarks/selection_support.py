"""Does best-of-n on the exact sampler stay on the support? An exact binomial answer.

The suites read best-of-n's atypical share as an exact weighted mean over one pool and
judge it against a 128-sample null; this asks the question directly. On gmm2 and gmm64,
for each seed's proxy replicate (proxy_mlp, the gmm suite's), draw M independent
best-of-n winners from the exact mixture sampler for every n (targets balanced over the
classes, ranked by the proxy's log-probability of the target, best_of_n's default), and
count the winners outside the typical set (`gold_atypical`: outside the central 99% of
real log-densities, so exactly 1% of real samples by construction). The count is
Binomial(M x seeds, p_n) for the true rate p_n of best-of-n's law, so its Clopper-Pearson
95% interval is exact; a rate whose interval lies above 1% has left the support's
typical set more often than data do. The same draws give the proxy's and the Bayes
classifier's probability of the target.

Writes results/coverage/selection_support.json (schema optbench.selection_support/1)
and selection_support.md.

    python benchmarks/selection_support.py [--winners 400]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "coverage"
NS = (1, 4, 16, 64, 256, 724, 2048, 8192)
SEEDS = (0, 1, 2, 3, 4)
CHUNK = 1 << 18   # candidates scored per forward


def winners(mixture, proxy, referee, n: int, m: int, rng: np.random.Generator, classes: int) -> dict:
    """m best-of-n winners (targets cycling over the classes): atypical count and mean
    target probabilities."""
    target = np.arange(m) % classes
    atypical = proxy_prob = gold_prob = 0.0
    per = max(1, CHUNK // n)   # winners per chunk
    for start in range(0, m, per):
        t = torch.from_numpy(target[start:start + per])
        k = len(t)
        x, _, _ = mixture.sample(k * n, rng)
        x = torch.from_numpy(x).float().view(k, n, -1)
        with torch.no_grad():
            logp = proxy(x.view(k * n, -1)).log_softmax(1).view(k, n, -1)
        score = logp.gather(2, t.view(k, 1, 1).expand(k, n, 1)).squeeze(2)
        best = x[torch.arange(k), score.argmax(1)]
        gold = referee.per_sample(best.double(), t)
        atypical += float(gold["gold_atypical"].sum())
        gold_prob += float(gold["gold_prob"].sum())
        proxy_prob += float(score.max(1).values.exp().sum())
    return {"atypical": int(atypical), "proxy_prob": proxy_prob / m, "gold_prob": gold_prob / m}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--winners", type=int, default=400, help="winners per seed and n")
    a = p.parse_args()
    from optbench.domains import get_domain
    from optbench.training.replicates import load_replicate
    torch.manual_seed(0)
    rows = []
    for domain in ("gmm2", "gmm64"):
        dom = get_domain(domain)
        referee = dom.gold()
        for n in NS:
            tot = {"atypical": 0, "proxy_prob": 0.0, "gold_prob": 0.0}
            for seed in SEEDS:
                proxy, _ = load_replicate(domain, "proxy_mlp", seed, "cpu")
                got = winners(dom.mixture, proxy, referee, n, a.winners, np.random.default_rng([20261202, seed, n]),
                              dom.num_classes)
                tot["atypical"] += got["atypical"]
                tot["proxy_prob"] += got["proxy_prob"] / len(SEEDS)
                tot["gold_prob"] += got["gold_prob"] / len(SEEDS)
            draws = a.winners * len(SEEDS)
            ci = binomtest(tot["atypical"], draws).proportion_ci(0.95, method="exact")
            rows.append({"domain": domain, "n": n, "winners": draws, "atypical": tot["atypical"],
                         "rate": tot["atypical"] / draws, "lo": float(ci.low), "hi": float(ci.high),
                         "above_real": bool(ci.low > 0.01), "proxy_prob": tot["proxy_prob"],
                         "gold_prob": tot["gold_prob"]})
            print(rows[-1], flush=True)
    doc = {"schema": "optbench.selection_support/1", "seeds": list(SEEDS), "winners_per_seed": a.winners,
           "real_rate": 0.01, "interval": "Clopper-Pearson 95% (exact binomial)", "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "selection_support.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# Best-of-n on the exact sampler: share of winners outside the typical set", "",
             f"{a.winners} independent winners per seed and n, {len(SEEDS)} seeds (a proxy replicate each); real "
             "data: 1% by construction. Clopper-Pearson 95% intervals (exact).", "",
             "| domain | n | atypical winners | rate | interval | above 1%? | proxy prob | Bayes prob of target |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['domain']} | {r['n']:,} | {r['atypical']} / {r['winners']} | {r['rate']:.2%} "
                     f"| [{r['lo']:.2%}, {r['hi']:.2%}] | {'yes' if r['above_real'] else 'no'} "
                     f"| {r['proxy_prob']:.3f} | {r['gold_prob']:.3f} |")
    (OUT / "selection_support.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
