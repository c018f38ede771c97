"""Speed of the pressure sources that came from peers, each against what it should cost:

- gradient-free search: seconds per proxy query against a bare batched forward pass of
  the same proxy on the very images the search scored, replayed (goal: within 1.2x). Not
  on the starts: the CNN's max-pooling costs 1.6-3x more on noisy candidates than on
  clean digits (its comparisons branch on the data), which a forward pass over real
  images hides and which no search can avoid;
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

from optbench.models.checkpoints import load_model
from optbench.models.fixed_batch import chunks
from optbench.pressure import SOURCES, Context
from optbench.pressure.feature_vis import feature_vis_ascent
from optbench.pressure.pixel_ascent import pixel_ascent
from optbench.pressure.search import queries, search
from optbench.pressure.starts import make_starts
from optbench.workers import setup_torch
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

    class Recording(torch.nn.Module):
        """The proxy, keeping a copy of every batch it scores (to replay as the baseline)."""
        def __init__(self):
            super().__init__()
            self.model, self.batches = model, []

        def forward(self, x):
            self.batches.append(x.clone())
            return self.model(x)

    def run_search(alg, enc="direct", sigma=0.1, proxy=model):
        s = SOURCES[alg].defaults(population=P, sigma=sigma, **({"encoding": enc} if alg == "genetic" else {}))
        return lambda: list(search(Context.of(proxy, "mnist"), x0, target, [0, G], s, alg))

    def replay(batches):
        def forward_all():
            with torch.no_grad():
                for x in batches:
                    model(x)
        return forward_all

    searches = {"random_search": ("random_search", "direct", 0.1), "cma_es": ("cma_es", "direct", 0.1),
                "genetic": ("genetic", "direct", 0.1), "genetic cppn": ("genetic", "cppn", 0.5)}
    fns = {}
    for name, (alg, enc, sigma) in searches.items():
        recorder = Recording().eval()
        run_search(alg, enc, sigma, recorder)()
        fns[name] = run_search(alg, enc, sigma)
        fns[f"{name}: forward of its candidates"] = replay(recorder.batches)
    starts = x0.repeat_interleave(P, 0)          # in the chunks the searches' calls use
    fns["forward of the starts x (n P)"] = replay([starts[i:j] for i, j in chunks(len(starts))] * G)
    times = timed_rounds(fns, a.repeats)
    print(f"## gradient-free search: {a.n} samples x population {P}, {G} generations, {a.threads} thread(s)\n")
    print("| source | seconds per query | vs a batched forward pass of its own candidates | "
          "vs one of the starts, per query |\n|---|---|---|---|")
    for name, (alg, enc, sigma) in searches.items():
        n_queries = a.n * queries(alg, enc, P, G)
        per_query = queries(alg, enc, P, G) / (P * G)     # the search's queries per starts-loop query
        starts_ratio = median_ratio(times, name, "forward of the starts x (n P)") / per_query
        print(f"| {name} | {statistics.median(times[name]) / n_queries * 1e6:.0f} us | "
              f"{median_ratio(times, name, f'{name}: forward of its candidates'):.2f}x | {starts_ratio:.2f}x |")
    print("\n(queries: search.queries, the start or a GA's first population included; the replay "
          "scores the same batches, the same number of queries)\n")

    steps = 16
    ctx, fv = Context.of(model, "mnist"), SOURCES["feature_vis"]
    fns = {"pixel ascent": lambda: list(pixel_ascent(ctx, x0, target, [0, steps], SOURCES["pixel_ascent"].defaults())),
           "feature_vis, fourier": lambda: list(feature_vis_ascent(ctx, x0, target, [0, steps], fv.defaults())),
           "feature_vis, fourier + jitter/scale/rotate + tv + l2": lambda: list(feature_vis_ascent(
               ctx, x0, target, [0, steps], fv.defaults(jitter=2, scale=0.1, rotate=10.0, tv=1.0, l2=1.0)))}
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
        s = SOURCES["pixel_ascent"].defaults(lr=alpha, optimizer="steepest", objective="log_prob", norm=norm, eps=eps)
        fns = {"ours": lambda: list(pixel_ascent(ctx, x0, target, [0, 40], s)),
               "torchattacks": lambda: attack(x0, torch.zeros(a.n, dtype=torch.long))}
        times = timed_rounds(fns, a.repeats)
        print(f"| {norm} eps {eps} | {statistics.median(times['ours']):.2f} s | "
              f"{statistics.median(times['torchattacks']):.2f} s | {median_ratio(times, 'ours', 'torchattacks'):.2f}x |")


if __name__ == "__main__":
    main()
