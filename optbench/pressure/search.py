"""Gradient-free search against a frozen proxy: the objection "gradient ascent is a
strawman; evolution finds fooling images too" (Nguyen et al. 2015, "Deep Neural Networks
are Easily Fooled", who evolved images with direct and CPPN encodings).

Every output sample runs its own search, and each generation scores the populations of
all samples as one batch (fixed-shape chunks, models/fixed_batch.py). A sample draws only
from its own generator, so its search is the same alone or in any batch. The output at
each level is the sample's best candidate so far (the searches are elitist), so the
proxy score never falls.

    random_search  (1 + lambda): lambda Gaussian perturbations of the current best,
                   step sigma, keep the best if it improves
    cma_es         separable CMA-ES (Ros and Hansen 2008), batched over samples here (the
                   `cma` package, Hansen's reference implementation, is the tests'
                   reference for its box transformation and its convergence). Diagonal
                   covariance: a full one is d x d per sample (784^2 x 128 floats for
                   MNIST) and an eigendecomposition each generation.
    genetic        elitist GA: binary tournaments, uniform crossover, Gaussian mutation of
                   each gene with probability `mutation_rate`. Genes are pixels (direct
                   encoding) or the weights of a CPPN (cppn encoding; a fixed topology,
                   where Nguyen et al. evolved it with NEAT) rendered over the pixel grid.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from optbench.models.fixed_batch import map_fixed
from optbench.pressure.pixel_ascent import OBJECTIVE
from optbench.pressure.source import MAX_LR, MAX_STEPS, Context, Level, Setting, Source, Trajectory
from optbench.pressure.starts import STARTS, make_starts
from optbench.proxies import as_proxy
from optbench.rng import sample_rng

ALGORITHMS = ("random_search", "cma_es", "genetic")
ENCODINGS = ("direct", "cppn")
SEARCH_STREAM = 12


# -- CPPN encoding --------------------------------------------------------------------
CPPN_HIDDEN = 8
# Inputs per pixel: x, y, distance from the centre, bias (Stanley 2007; Nguyen et al. 2015).
CPPN_ACTIVATIONS = (torch.sin, lambda h: torch.exp(-h * h), torch.tanh)


def cppn_genes(shape) -> int:
    """Weights of a CPPN with 4 inputs, three hidden layers of CPPN_HIDDEN units (sine,
    Gaussian, tanh) and one output per channel."""
    h, c = CPPN_HIDDEN, shape[0]
    return (4 * h + h) + 2 * (h * h + h) + (h * c + c)


def cppn_render(genes: torch.Tensor, shape, bounds) -> torch.Tensor:
    """(n, genes) -> (n, c, h, w) images in the bounds: the CPPN evaluated at every pixel."""
    c, height, width = shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height, device=genes.device),
                            torch.linspace(-1, 1, width, device=genes.device), indexing="ij")
    grid = torch.stack([xs, ys, torch.sqrt(xs ** 2 + ys ** 2), torch.ones_like(xs)], -1).reshape(1, -1, 4)
    h = grid.expand(len(genes), -1, -1)
    k, units = 0, 4
    for act in CPPN_ACTIVATIONS:
        w = genes[:, k:k + units * CPPN_HIDDEN].reshape(-1, units, CPPN_HIDDEN)
        b = genes[:, k + units * CPPN_HIDDEN:k + (units + 1) * CPPN_HIDDEN]
        h = act(h @ w + b[:, None])
        k, units = k + (units + 1) * CPPN_HIDDEN, CPPN_HIDDEN
    w = genes[:, k:k + CPPN_HIDDEN * c].reshape(-1, CPPN_HIDDEN, c)
    b = genes[:, k + CPPN_HIDDEN * c:k + (CPPN_HIDDEN + 1) * c]
    out = torch.sigmoid(h @ w + b[:, None])                         # (n, pixels, c)
    lo, hi = bounds
    return lo + (hi - lo) * out.transpose(1, 2).reshape(len(genes), c, height, width)


# -- the searches -----------------------------------------------------------------------
class Search:
    """The interface search() drives, per generation: ask() for (n, P, D) candidates,
    tell() their (n, P) scores, then best_so_far() with each sample's best genes."""

    def initial(self, x0: np.ndarray) -> np.ndarray:
        """Generation 0's (n, P0, D) genes: the start alone by default."""
        return x0[:, None]

    def tell_initial(self, scores: np.ndarray) -> None:
        """The (n, P0) scores of initial()'s genes."""

    def best_so_far(self, best: np.ndarray) -> None:
        """Each sample's best genes so far (the driver keeps them)."""


class RandomSearch(Search):
    """(1 + lambda) search: the sample's current best plus sigma-Gaussian steps."""

    def __init__(self, x0: np.ndarray, population: int, sigma: float, rngs, bounds, **_):
        self.best, self.pop, self.sigma, self.rngs, self.bounds = x0.copy(), population, sigma, rngs, bounds

    def ask(self) -> np.ndarray:                       # (n, P, D)
        # clip(best + sigma * steps), built sample by sample in place: each sample's block
        # stays in cache, where whole-batch passes cost as much as the proxy (README, Speed).
        x = np.empty((len(self.rngs), self.pop, self.best.shape[1]))
        for r, xi, best in zip(self.rngs, x, self.best):
            r.standard_normal(out=xi)
            xi *= self.sigma
            xi += best
            np.clip(xi, *self.bounds, out=xi)
        return x

    def tell(self, candidates: np.ndarray, scores: np.ndarray) -> None:
        pass   # the driver keeps the best; the next generation perturbs it

    def best_so_far(self, best: np.ndarray) -> None:
        self.best = best


def linquad_margins(bounds) -> tuple[float, float]:
    """The widths al, au of the quadratic pieces of cma's box transformation
    (cma.transformations.BoxConstraintsLinQuadTransformation, default margins)."""
    lb, ub = bounds
    return min((ub - lb) / 2, 0.05 * max(abs(lb), 1)), min((ub - lb) / 2, 0.05 * max(abs(ub), 1))


def box_transform(x: np.ndarray, bounds, overwrite: bool = False) -> np.ndarray:
    """Map unbounded genotypes into the box [lb, ub]: cma's periodic linear-quadratic
    transformation, vectorized (the identity in [lb + al, ub - au], quadratic beside it,
    mirrored and periodic beyond). tests/test_search.py compares it with cma's own.
    With `overwrite`, x's memory holds the result (CMA-ES's candidates are temporaries)."""
    lb, ub = bounds
    al, au = linquad_margins(bounds)
    period, left = 2 * (ub - lb + al + au), lb - 2 * al - (ub - lb) / 2
    far = (x < left) | (x > ub + 2 * au + (ub - lb) / 2)      # per element: a NaN elsewhere
    if far.any():                                              # cannot hide it (rare: box widths)
        x = np.where(far, x - period * np.floor((x - left) / period), x)
    # Mirror into [lb - al, ub + au], then bend the margins: with t the depth into a
    # margin, cma's lb + (x - (lb - al))^2 / (4 al) is x + t^2 / (4 al) (likewise above).
    # In place on whole arrays: masked indexing and fresh temporaries cost more than
    # the proxy's forward pass on MNIST.
    # In place is exact: after the far shift no element is mirrored at both ends, so the
    # second mirror's depth is 0 wherever the first one moved x.
    y, t = (x if overwrite else x.copy()), np.empty_like(x)

    def depth_into(a, b):       # t = max(a - b, 0), in place
        np.subtract(a, b, out=t)
        return np.maximum(t, 0, out=t)
    y -= 2 * depth_into(x, ub + au)               # mirror into [lb - al, ub + au]
    y += 2 * depth_into(lb - al, x)
    y += np.square(depth_into(lb + al, y), out=t) / (4 * al)    # bend the margins
    y -= np.square(depth_into(y, ub - au), out=t) / (4 * au)
    return y


def box_inverse(y: np.ndarray, bounds) -> np.ndarray:
    """A genotype that box_transform maps to y (y in [lb, ub])."""
    lb, ub = bounds
    al, au = linquad_margins(bounds)
    y = np.clip(y, lb, ub)
    return np.where(y < lb + al, lb - al + 2 * np.sqrt(al * np.maximum(y - lb, 0)),
                    np.where(y < ub - au, y, ub + au - 2 * np.sqrt(au * np.maximum(ub - y, 0))))


class CMAES(Search):
    """Separable CMA-ES (Ros and Hansen 2008), one per sample, all samples' updates as
    array operations. Written here because no library runs many independent CMA-ES
    searches as one batch: the `cma` package's per-candidate bound repair in Python cost
    2.7x the proxy's forward pass per query. Equations and defaults: Hansen 2016, "The
    CMA Evolution Strategy: A Tutorial", eqs. (39)-(47) and Table 1, with positive
    recombination weights only, and c1, cmu multiplied by (n + 2) / 3 for the diagonal
    covariance (Ros and Hansen 2008, sec. 2). The box is handled as cma does it: the
    search runs on unbounded genotypes, candidates are their image under cma's
    linear-quadratic box transformation (box_transform). Each sample draws its normals
    from its own generator, so its search is the same alone or in any batch."""

    def __init__(self, x0: np.ndarray, population: int, sigma: float, rngs, bounds, **_):
        n_samples, n = x0.shape
        self.rngs, self.bounds, self.lam = rngs, bounds, population
        self.mu = population // 2
        w = np.log((population + 1) / 2) - np.log(np.arange(1, self.mu + 1))
        self.w = w / w.sum()
        self.mueff = 1 / (self.w ** 2).sum()
        self.cs = (self.mueff + 2) / (n + self.mueff + 5)
        self.ds = 1 + 2 * max(0.0, np.sqrt((self.mueff - 1) / (n + 1)) - 1) + self.cs
        self.cc = (4 + self.mueff / n) / (n + 4 + 2 * self.mueff / n)
        c1 = 2 / ((n + 1.3) ** 2 + self.mueff)
        cmu = min(1 - c1, 2 * (self.mueff - 2 + 1 / self.mueff) / ((n + 2) ** 2 + self.mueff))
        self.c1 = min(1.0, c1 * (n + 2) / 3)
        self.cmu = min(1 - self.c1, cmu * (n + 2) / 3)
        self.chi_n = np.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))   # E||N(0, I)||
        self.m = box_inverse(x0, bounds)
        self.sigma = np.full(n_samples, float(sigma))
        self.c = np.ones((n_samples, n))            # the diagonal of C
        self.ps = np.zeros((n_samples, n))
        self.pc = np.zeros((n_samples, n))
        self.gen = 0

    def ask(self) -> np.ndarray:
        # m + sigma sqrt(C) z in the box, built sample by sample (each block stays in cache).
        self._z = np.empty((len(self.rngs), self.lam, self.m.shape[1]))
        candidates = np.empty_like(self._z)
        scale = self.sigma[:, None] * np.sqrt(self.c)
        for r, z, x, s, m in zip(self.rngs, self._z, candidates, scale, self.m):
            r.standard_normal(out=z)
            np.multiply(z, s, out=x)
            x += m
            x[...] = box_transform(x, self.bounds, overwrite=True)
        return candidates

    def tell(self, candidates: np.ndarray, scores: np.ndarray) -> None:
        order = np.argsort(-scores, axis=1, kind="stable")[:, :self.mu]      # maximize
        z = self._z[np.arange(len(order))[:, None], order]                  # (n_samples, mu, n)
        # y = sqrt(C) z, so the weighted sums of y and y^2 follow from those of z and z^2
        # (einsum without BLAS: the same summation order for any number of samples).
        z_w = np.einsum("k,skd->sd", self.w, z)
        zz_w = np.einsum("k,skd->sd", self.w, z * z)
        y_w = np.sqrt(self.c) * z_w
        self.m = self.m + self.sigma[:, None] * y_w                                          # (41)
        self.ps = (1 - self.cs) * self.ps + np.sqrt(self.cs * (2 - self.cs) * self.mueff) * z_w  # (43)
        self.gen += 1
        ps_norm = np.linalg.norm(self.ps, axis=1)
        n = self.m.shape[1]
        h = ps_norm / np.sqrt(1 - (1 - self.cs) ** (2 * self.gen)) < (1.4 + 2 / (n + 1)) * self.chi_n
        self.pc = (1 - self.cc) * self.pc + (h * np.sqrt(self.cc * (2 - self.cc) * self.mueff))[:, None] * y_w  # (45)
        rank_one = self.pc ** 2 + ((1 - h) * self.cc * (2 - self.cc))[:, None] * self.c
        self.c = (1 - self.c1 - self.cmu) * self.c + self.c1 * rank_one + self.cmu * self.c * zz_w  # (47)
        self.sigma = self.sigma * np.exp(self.cs / self.ds * (ps_norm / self.chi_n - 1))               # (44)


class Genetic(Search):
    """Elitist GA over gene vectors: the best individual survives unchanged; the other
    P - 1 are children of binary-tournament parents, uniform crossover, and Gaussian
    mutation (sd sigma) of each gene with probability mutation_rate."""

    def __init__(self, x0: np.ndarray, population: int, sigma: float, rngs, bounds, mutation_rate: float,
                 clip: bool = True, **_):
        self.pop, self.sigma, self.rngs, self.rate = population, sigma, rngs, mutation_rate
        self.bounds = bounds if clip else (-np.inf, np.inf)
        # Generation 0: the start and P - 1 mutants of it.
        self.genes = np.repeat(x0[:, None], population, 1)
        for g, r in zip(self.genes, rngs):
            self._mutate(g, r)
        self.genes[:, 0] = x0
        self.scores = None

    def _mutate(self, g: np.ndarray, rng) -> np.ndarray:
        """Mutate g in place (and return it)."""
        hit = rng.random(g.shape) < self.rate
        g[hit] += self.sigma * rng.standard_normal(int(hit.sum()))   # draws for the mutated genes only
        return np.clip(g, *self.bounds, out=g)

    def initial(self, x0: np.ndarray) -> np.ndarray:
        return self.genes       # the start and P - 1 mutants (made in __init__)

    def tell_initial(self, scores: np.ndarray) -> None:
        self.scores = scores

    def ask(self) -> np.ndarray:
        children = np.empty((len(self.genes), self.pop - 1, self.genes.shape[2]))
        for genes, scores, rng, child in zip(self.genes, self.scores, self.rngs, children):
            a, b = rng.integers(0, self.pop, (2, 2 * (self.pop - 1)))
            parents = np.where(scores[a] >= scores[b], a, b).reshape(2, self.pop - 1)
            mix = rng.random((self.pop - 1, genes.shape[1])) < 0.5
            np.take(genes, parents[1], axis=0, out=child)              # uniform crossover,
            np.copyto(child, genes[parents[0]], where=mix)              # into the batch's array
            self._mutate(child, rng)
        return children

    def tell(self, candidates: np.ndarray, scores: np.ndarray) -> None:
        elite = self.scores.argmax(1)
        rows = np.arange(len(elite))
        self.genes = np.concatenate([self.genes[rows, elite][:, None], candidates], 1)
        self.scores = np.concatenate([self.scores[rows, elite][:, None], scores], 1)


def search(ctx: Context, start: torch.Tensor, target: torch.Tensor, levels: list[int], s: dict,
           algorithm: str, sample_ids: list[int] | None = None) -> Iterator[Level]:
    """Yield a Level (generations, each sample's best output so far, its mean score as
    `search_score`) at every level, with the settings `s` of the source named
    `algorithm` (population, sigma, objective; the GA's encoding and mutation_rate).
    Genes are float64 numpy (the searches' own arithmetic); candidates are scored in
    float32 by the proxy. With the cppn encoding the start is not used (a CPPN cannot
    encode a photograph): generation 0 is the best of P random CPPNs. Row r searches as
    sample sample_ids[r] of ctx.seed (default: r)."""
    population, sigma, objective = s["population"], s["sigma"], s["objective"]
    encoding = s.get("encoding", "direct")   # the GA's settings; the other searches have pixels only
    seed, bounds, crossings = ctx.seed, ctx.bounds, ctx.crossings
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: unknown {algorithm!r}; allowed: {', '.join(ALGORITHMS)}")
    if encoding == "cppn" and algorithm != "genetic":
        raise ValueError("encoding: 'cppn' is the genetic algorithm's (Nguyen et al. 2015)")
    proxy = as_proxy(ctx.proxy)
    shape, device = tuple(start.shape[1:]), start.device
    n = len(start)
    ids = range(n) if sample_ids is None else sample_ids
    rngs = [sample_rng(seed, i, SEARCH_STREAM) for i in ids]
    if encoding == "cppn":
        x0 = np.stack([r.standard_normal(cppn_genes(shape)) for r in rngs])
        decode = lambda g: cppn_render(torch.from_numpy(g).float().to(device), shape, bounds)  # noqa: E731
    else:
        x0 = start.detach().cpu().double().reshape(n, -1).numpy()
        decode = lambda g: torch.from_numpy(g).float().to(device).reshape(len(g), *shape)  # noqa: E731
    kind = {"random_search": RandomSearch, "cma_es": CMAES, "genetic": Genetic}[algorithm]
    algo = kind(x0, population, sigma, rngs, bounds, mutation_rate=s.get("mutation_rate"), clip=encoding == "direct")

    def score(genes: np.ndarray) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """(n, P) scores of (n, P, D) genes, their images and their probabilities."""
        flat = genes.reshape(-1, genes.shape[-1])
        x = map_fixed(lambda g: decode(g.numpy()), torch.from_numpy(flat)) if encoding == "cppn" else decode(flat)
        t = target.repeat_interleave(genes.shape[1])
        with torch.no_grad():
            s, p = map_fixed(lambda xc, tc: torch.stack(proxy.score_and_prob(xc, tc, objective), 1), x, t).unbind(1)
        return s.double().cpu().numpy().reshape(genes.shape[:2]), x, p.reshape(genes.shape[:2])

    # Generation 0: the start (or, for a GA, its whole initial population).
    first = algo.initial(x0)
    s0, x_first, p0 = score(first)
    algo.tell_initial(s0)
    pick = s0.argmax(1)
    rows, t_rows = np.arange(n), torch.arange(n)
    best_genes, best_score = first[rows, pick], s0[rows, pick]
    best_x = x_first.reshape(n, first.shape[1], *shape)[t_rows, torch.from_numpy(pick)]
    best_prob = p0[t_rows, torch.from_numpy(pick)]
    gen = 0
    for level in levels:
        while gen < level:
            if crossings is not None:
                crossings.update(gen, best_prob, lambda mask: best_x[mask.to(best_x.device)])
            candidates = algo.ask()
            s, x, p = score(candidates)
            algo.tell(candidates, s)
            top = s.argmax(1)
            better = s[rows, top] > best_score
            best_score = np.where(better, s[rows, top], best_score)
            best_genes[better] = candidates[rows, top][better]
            mask, t_top = torch.from_numpy(better), torch.from_numpy(top)
            best_x[mask] = x.reshape(n, candidates.shape[1], *shape)[t_rows, t_top][mask]
            best_prob[mask] = p[t_rows, t_top][mask]
            algo.best_so_far(best_genes)
            gen += 1
        if gen == levels[-1] and crossings is not None:
            crossings.update(gen, best_prob, lambda mask: best_x[mask.to(best_x.device)])
        yield Level(gen, best_x.clone(), values={"search_score": float(np.mean(best_score))})


def queries(algorithm: str, encoding: str, population: int, generations: float) -> float:
    """Forward passes per output sample to reach `generations` (no backward passes):
    the start (1), or a GA's initial population (P), then P candidates per generation
    (P - 1 for the GA, whose elite is not re-scored)."""
    if algorithm == "genetic":
        return population + (population - 1) * generations
    return 1 + population * generations



def _run(algorithm: str):
    def run(ctx: Context, s: dict) -> Trajectory:
        x0, target = make_starts(ctx.domain, s["start"], ctx.n, ctx.seed)
        x0, target = x0.to(ctx.device), target.to(ctx.device)
        levels = search(ctx, x0, target, ctx.step_levels(s["max_generations"]), s, algorithm)
        return Trajectory(x0.cpu(), target.cpu(), (level.cpu() for level in levels))
    return run


def _source(algorithm: str, doc: str, version: int = 1, **extra: Setting) -> Source:
    return Source(
        name=algorithm,
        knob="generations",
        pressure="generations",
        doc=doc + "; each sample searches on its own, all populations scored as one batch; "
                  "the output is each sample's best so far",
        run=_run(algorithm),
        iterative=True,
        settings={
            "start": Setting(str, "real", STARTS, doc="as pixel ascent's (unused by the cppn encoding)"),
            "population": Setting(int, 32, minimum=2, maximum=2**14, doc="candidates per sample per generation"),
            "sigma": Setting(float, 0.1, minimum=1e-12, maximum=MAX_LR, doc="mutation / step size (pixels, or CPPN weights)"),
            "max_generations": Setting(int, 256, minimum=1, maximum=MAX_STEPS, doc="last level; levels are 0, 1, 2, 4, ..."),
            "objective": OBJECTIVE,
            **extra,
        },
        values={"search_score": "mean over samples of the best proxy score found so far (the objective's)"},
        queries=lambda s, k, n: (queries(algorithm, s.get("encoding", "direct"), s["population"], k), 0.0),
        version=version,
    )


RANDOM_SEARCH = _source("random_search", "(1 + lambda) random search: Gaussian steps around the best so far")
# version 2: the batched separable CMA-ES (version 1 ran the cma package per sample)
CMA_ES = _source("cma_es", "separable CMA-ES (Ros and Hansen 2008), batched over samples, in "
                 "pixel space with cma's box transformation", version=2)
GENETIC = _source(
    "genetic", "elitist genetic algorithm (Nguyen et al. 2015): tournaments, uniform crossover, Gaussian "
    "mutation, on pixels (direct) or on a CPPN's weights (cppn)",
    encoding=Setting(str, "direct", ENCODINGS, doc="genes are pixels, or the weights of a fixed-topology CPPN"),
    mutation_rate=Setting(float, 0.1, minimum=0.0, doc="probability that a gene mutates"))
