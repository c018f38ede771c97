"""False-positive rate of one level's departure rule on real data outside the null pool.
A measurement, not a test.

A level "has left the data" by a metric when the metric lies beyond the 99th percentile
(1st for metrics that fall) of its real-against-real null at the same n. The null pool is
the test and generator_train splits; here SETS sets of n real examples are drawn without
replacement from the proxy_train split (real, never in the null pool) and scored against
the reference split by the same code, and the share of sets each metric flags is
reported with its Clopper-Pearson 95% interval (nominal 1%).

Writes results/coverage/null_false_positives.json (schema
optbench.null_false_positives/1) and .md.

    python benchmarks/null_false_positives.py [--domain mnist] [--n 128] [--sets 500]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "coverage"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--domain", default="mnist")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--sets", type=int, default=500)
    a = p.parse_args()
    from optbench.domains import get_domain
    from optbench.metrics import departure_side
    from optbench.referees import Referee
    from optbench.workers import setup_torch
    setup_torch(1)
    dom = get_domain(a.domain)
    referee = Referee(a.domain, dom.default_proxy)
    null = referee.null(a.n)
    x, _ = dom.load_split("proxy_train")
    feats = referee.features(x)
    rng = np.random.default_rng(20261202)
    flags: dict[str, int] = {}
    for _ in range(a.sets):
        idx = torch.from_numpy(rng.choice(len(x), a.n, replace=False))
        values = referee.distribution_of_features({k: v[idx] for k, v in feats.items()})
        for k, v in values.items():
            side = departure_side(k)
            if side is None or k not in null:
                continue
            beyond = v > null[k]["q99"] if side == "high" else v < null[k]["q01"]
            flags[k] = flags.get(k, 0) + int(beyond)
    rows = []
    for k, f in sorted(flags.items()):
        ci = binomtest(f, a.sets).proportion_ci(0.95, method="exact")
        rows.append({"metric": k, "flagged": f, "sets": a.sets, "rate": f / a.sets, "lo": float(ci.low),
                     "hi": float(ci.high)})
    kid = [r for r in rows if r["metric"].split("@")[0] == "kid"]
    doc = {"schema": "optbench.null_false_positives/1", "domain": a.domain, "n": a.n, "sets": a.sets,
           "data": f"sets of {a.n} drawn without replacement from proxy_train ({len(x)} examples), against reference",
           "nominal": 0.01, "interval": "Clopper-Pearson 95% (exact binomial)",
           "kid_range": [min(r["rate"] for r in kid), max(r["rate"] for r in kid)], "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"null_false_positives_{a.domain}_{a.n}"
    (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [f"# {a.domain}: one level's departure rule on real data outside the null pool (n = {a.n})", "",
             f"{doc['data']}; {a.sets} sets; share flagged beyond the null's q99 (q01 for metrics that fall), "
             "Clopper-Pearson 95% intervals; nominal 1%.", "",
             "| metric | flagged | rate | interval |", "|---|---|---|---|"]
    lines += [f"| `{r['metric']}` | {r['flagged']} / {r['sets']} | {r['rate']:.1%} | [{r['lo']:.1%}, {r['hi']:.1%}] |"
              for r in rows]
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
