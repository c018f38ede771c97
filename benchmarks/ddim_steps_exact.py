"""How far deterministic DDIM on the *exact* score of a ground-truth domain lands from the
data, against its number of steps: the sampler's own departure, with no network error.
Conditional sampling (CFG w = 1), 128 samples per seed, 5 seeds; the exact support and
distribution truths (gold_atypical, gold_ks) against their q99 at n = 128.

    .venv/bin/python benchmarks/ddim_steps_exact.py > results/gmm/ddim_steps.md
"""
import time

import torch

from optbench.domains import get_domain
from optbench.models.checkpoints import load_model
from optbench.pressure.guidance import GUIDANCE_SOURCE, guided_samples, initial_noise
from optbench.report.intervals import mean_ci
from optbench.workers import setup_torch

setup_torch(1)
STEPS, SEEDS, N = (25, 100, 250, 1000), range(5), 128
print("| domain | DDIM steps | gold_atypical [95% CI] | gold_ks [95% CI] | gold_maha | seconds per 128 |")
print("|---|---|---|---|---|---|")
for name in ("gmm2", "gmm64"):
    dom = get_domain(name)
    gold, unet = dom.gold(), load_model(name, "diffusion_exact")
    null = gold.null(N)
    labels = torch.arange(N) % dom.num_classes
    for steps in STEPS:
        rows, t0 = [], time.time()
        for seed in SEEDS:
            s = GUIDANCE_SOURCE.defaults(scales=[1.0], ddim_steps=steps)
            x = next(guided_samples(unet, labels, initial_noise(N, seed, dom.shape), s, bounds=dom.bounds)).x
            per = gold.per_sample(x, labels)
            rows.append((float(per["gold_atypical"].mean()), gold.set_metrics(x)["gold_ks"],
                         float(per["gold_maha"].mean())))
        a, k, m = (mean_ci(v) for v in zip(*rows))
        print(f"| {name} | {steps} | {a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}] | {k[0]:.3f} [{k[1]:.3f}, {k[2]:.3f}] "
              f"| {m[0]:.2f} | {(time.time() - t0) / len(SEEDS):.1f} |", flush=True)
    print(f"| {name} | null q99 (n = {N}) | {null['gold_atypical']['q99']:.3f} | {null['gold_ks']['q99']:.3f} "
          f"| {null['gold_maha']['mean']:.2f} (mean) | |", flush=True)
