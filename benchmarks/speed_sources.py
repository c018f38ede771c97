"""Speed of the pressure sources that came from peers, each against what it should cost:

- gradient-free search: seconds per proxy query against a bare batched forward pass of
  the same proxy on as many images (goal: within 1.2x);
- feature_vis: a step against a pixel-ascent step (the Fourier transform, the random
  affine warp and the penalties are its overhead);
- targeted PGD: optbench's steepest-ascent pixel ascent against torchattacks' PGD and
  PGDL2 on the same model, inputs and settings.

    .venv/bin/python benchmarks/speed_sources.py [--threads 1] [--n 128] [--population 32]

Loops run interleaved and each ratio is the median of per-round ratios (the VM's speed
drifts 10-20% within a minute; see speed_pixel_ascent.py)."""
from __future__ import annotations

import argparse
import statistics

import torch

from optbench.models import load_model
from optbench.models.fixed_batch import map_fixed
from optbench.pressure.feature_vis import feature_vis_ascent
from optbench.pressure.pixel_ascent import pixel_ascent
from optbench.pressure.search import cppn_genes, cppn_render, queries, search
from optbench.pressure.starts import make_starts
from optbench.runner import setup_torch
from speed_pixel_ascent import ratio as median_ratio, timed_rounds   # this folder's helpers


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--population", type=int, default=32)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    setup_torch(a.threads)
    model = load_model("mnist", "proxy_cnn").eval()
    x0, target = make_starts("mnist", "real", a.n, 0)
    P, G = a.population, a.generations
    images = x0.repeat_interleave(P, 0)
    cppn = cppn_render(torch.randn(a.n * P, cppn_genes((1, 28, 28))), (1, 28, 28), (0.0, 1.0))
    t_images = target.repeat_interleave(P)

    def bare(x):
        with torch.no_grad():
            map_fixed(lambda xc: model(xc), x)

    def run_search(alg, enc="direct", sigma=0.1):
        return lambda: list(search(model, x0, target, [0, G], alg, P, sigma, encoding=enc))

    fns = {"forward x (n P)": lambda: [bare(images) for _ in range(G)],
           "forward x (n P), CPPN images": lambda: [bare(cppn) for _ in range(G)],
           "random_search": run_search("random_search"), "cma_es": run_search("cma_es"),
           "genetic": run_search("genetic"), "genetic cppn": run_search("genetic", "cppn", 0.5)}
    times = timed_rounds(fns, a.repeats)
    print(f"## gradient-free search: {a.n} samples x population {P}, {G} generations, {a.threads} thread(s)\n")
    print("| source | seconds per query | vs a batched forward pass, per query |\n|---|---|---|")
    for name, alg, enc in (("random_search", "random_search", "direct"), ("cma_es", "cma_es", "direct"),
                           ("genetic", "genetic", "direct"), ("genetic cppn", "genetic", "cppn")):
        base = "forward x (n P), CPPN images" if enc == "cppn" else "forward x (n P)"
        per_query = queries(alg, enc, P, G) / (P * G)     # the search's queries per bare-loop query
        ratio = median_ratio(times, name, base) / per_query
        print(f"| {name} | {statistics.median(times[name]) / (a.n * queries(alg, enc, P, G)) * 1e6:.0f} us | "
              f"{ratio:.2f}x |")
    print("\n(queries: search.queries, the start or a GA's first population included)\n")

    steps = 16
    fns = {"pixel ascent": lambda: list(pixel_ascent(model, x0, target, [0, steps])),
           "feature_vis, fourier": lambda: list(feature_vis_ascent(model, x0, target, [0, steps])),
           "feature_vis, fourier + jitter/scale/rotate + tv + l2": lambda: list(feature_vis_ascent(
               model, x0, target, [0, steps], jitter=2, scale=0.1, rotate=10, tv=1.0, l2=1.0))}
    times = timed_rounds(fns, a.repeats)
    print(f"## feature_vis: {a.n} samples, {steps} steps\n\n| loop | seconds per step | vs pixel ascent |\n|---|---|---|")
    for name in fns:
        print(f"| {name} | {statistics.median(times[name]) / steps:.3f} | {median_ratio(times, name, 'pixel ascent'):.2f}x |")

    import torchattacks
    print(f"\n## targeted PGD, {a.n} samples, 40 steps\n\n| attack | optbench | torchattacks | ratio |\n|---|---|---|---|")
    for norm, eps, alpha in (("linf", 0.3, 0.03), ("l2", 2.0, 0.2)):
        kind = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
        attack = kind(model, eps=eps, alpha=alpha, steps=40, random_start=False)
        attack.set_mode_targeted_by_function(lambda images, labels: target)
        fns = {"ours": lambda: list(pixel_ascent(model, x0, target, [0, 40], lr=alpha, optimizer="steepest",
                                                 objective="log_prob", norm=norm, eps=eps)),
               "torchattacks": lambda: attack(x0, torch.zeros(a.n, dtype=torch.long))}
        times = timed_rounds(fns, a.repeats)
        print(f"| {norm} eps {eps} | {statistics.median(times['ours']):.2f} s | "
              f"{statistics.median(times['torchattacks']):.2f} s | {median_ratio(times, 'ours', 'torchattacks'):.2f}x |")


if __name__ == "__main__":
    main()
