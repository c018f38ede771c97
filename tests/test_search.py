"""Gradient-free search: each algorithm finds the known optimum of a toy proxy, raises a
real proxy's score, keeps every sample's best so far, and is the same for a sample
alone or in a batch; the CPPN decodes to the image its weights say."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from optbench.models.checkpoints import load_model
from optbench.pressure import SOURCES, Context
from optbench.pressure.search import cppn_genes, cppn_render, search
from optbench.pressure.starts import make_starts
from optbench.proxies import as_proxy

CASES = [("random_search", "direct"), ("cma_es", "direct"), ("genetic", "direct"), ("genetic", "cppn")]


def run_search(proxy, x0, target, levels, algorithm, population, sigma, encoding="direct", seed=0,
               sample_ids=None) -> list:
    """The Levels of `algorithm` on [0, 1] (mnist's bounds) with its settings' defaults otherwise."""
    s = SOURCES[algorithm].defaults(population=population, sigma=sigma,
                                    **({"encoding": encoding} if algorithm == "genetic" else {}))
    return list(search(Context.of(proxy, "mnist", seed=seed), x0, target, levels, s, algorithm, sample_ids))


class Bowl(nn.Module):
    """Class-0 logit -||x - c||^2 (class 1's is 0): the optimum is x = c."""

    def __init__(self, centre: torch.Tensor):
        super().__init__()
        self.register_buffer("c", centre.reshape(1, -1))

    def forward(self, x):
        f = -(x.reshape(len(x), -1) - self.c).pow(2).sum(1)
        return torch.stack([f, torch.zeros_like(f)], 1)


@pytest.mark.parametrize("algorithm", ["random_search", "cma_es", "genetic"])
def test_search_finds_the_optimum_of_a_bowl(algorithm):
    """d = 8 inside [0, 1]: from the corner, every search ends near the centre c."""
    c = torch.linspace(0.2, 0.8, 8)
    x0, target = torch.zeros(4, 8), torch.zeros(4, dtype=torch.long)
    sigma = 0.3 if algorithm == "cma_es" else 0.05
    x = run_search(Bowl(c), x0, target, [0, 200], algorithm, 16, sigma, seed=1)[-1].x
    err = (x - c).norm(dim=1)
    # measured: random search 0.04, the GA 0.008, CMA-ES 0 (to float32); the start is 1.52 away
    assert err.max() < {"random_search": 0.1, "genetic": 0.05, "cma_es": 0.01}[algorithm], err


@pytest.fixture(scope="module")
def proxy():
    return as_proxy(load_model("mnist", "proxy_cnn"))


@pytest.mark.parametrize("algorithm,encoding", CASES)
def test_search_raises_the_proxy_score_and_keeps_the_best(proxy, algorithm, encoding):
    x0, target = make_starts("mnist", "real", 6, 0)
    sigma = 0.5 if encoding == "cppn" else 0.1
    scores = []
    for x in (lv.x for lv in run_search(proxy, x0, target, [0, 4, 16], algorithm, 16, sigma, encoding)):
        with torch.no_grad():
            scores.append(proxy(x).gather(1, target[:, None]).squeeze(1))
        assert x.min() >= 0 and x.max() <= 1
    assert all((b >= a - 1e-5).all() for a, b in zip(scores, scores[1:]))     # elitist, per sample
    assert (scores[-1] - scores[0]).mean() > 1.0, scores


@pytest.mark.kernels
@pytest.mark.parametrize("algorithm,encoding", CASES)
def test_a_sample_does_not_depend_on_its_batch(proxy, algorithm, encoding):
    x0, target = make_starts("mnist", "real", 5, 4)
    batch = run_search(proxy, x0, target, [0, 3], algorithm, 8, 0.1, encoding, seed=4)[-1].x
    for i in (0, 3):
        alone = run_search(proxy, x0[i:i + 1], target[i:i + 1], [0, 3], algorithm, 8, 0.1, encoding,
                           seed=4, sample_ids=[i])[-1].x
        assert torch.equal(alone[0], batch[i]), (algorithm, encoding, i)


def test_cppn_decodes_what_its_weights_say():
    shape, bounds = (1, 6, 5), (0.0, 1.0)
    genes = torch.zeros(2, cppn_genes(shape))
    genes[1, -1] = 2.0                                    # the output bias
    img = cppn_render(genes, shape, bounds)
    assert img.shape == (2, *shape)
    torch.testing.assert_close(img[0], torch.full(shape, 0.5))          # sigmoid(0)
    torch.testing.assert_close(img[1], torch.full(shape, float(torch.sigmoid(torch.tensor(2.0)))))
    rand = cppn_render(torch.from_numpy(np.random.default_rng(0).standard_normal((3, cppn_genes(shape)))).float(),
                       shape, (-1.0, 1.0))
    assert rand.min() >= -1 and rand.max() <= 1 and rand.std() > 0.05   # structured, in bounds
    # Row independence: a CPPN's image does not depend on the others in its batch.
    torch.testing.assert_close(cppn_render(genes[1:], shape, bounds), img[1:], rtol=0, atol=0)


def test_box_transform_is_cmas():
    """The batched CMA-ES handles the box as the `cma` package does: the same periodic
    linear-quadratic transformation, on points inside, beside and far beyond the box."""
    from cma.transformations import BoxConstraintsLinQuadTransformation
    from optbench.pressure.search import box_inverse, box_transform
    for bounds in [(0.0, 1.0), (-1.0, 1.0), (-5.0, 20.0)]:
        w = bounds[1] - bounds[0]        # points from three box widths below to three above
        x = np.random.default_rng(0).uniform(bounds[0] - 3 * w, bounds[1] + 3 * w, 2000)
        ref = BoxConstraintsLinQuadTransformation([list(bounds)] * len(x))
        assert np.allclose(box_transform(x, bounds), ref(x.copy()), rtol=0, atol=1e-12)
        # In place (as CMA-ES calls it) gives the same bits, near the box and beyond it.
        assert np.array_equal(box_transform(x.copy(), bounds, overwrite=True), box_transform(x, bounds))
        y = np.random.default_rng(1).uniform(*bounds, 500)
        assert np.allclose(box_transform(box_inverse(y, bounds), bounds), y, rtol=0, atol=1e-12)
    # A NaN in one row leaves the other rows' transformation (and the box) alone.
    x = np.array([[np.nan, 0.5], [5.0, -7.3]])
    assert np.array_equal(box_transform(x, (0.0, 1.0))[1], box_transform(x[1:], (0.0, 1.0))[0])


def test_cma_es_converges_like_the_cma_package():
    """On a separable ellipsoid in d = 20 (condition 1e3, no box in reach), our separable
    CMA-ES needs about as many generations as cma's own (CMA_diagonal) to reach 1e-8
    (measured: 238, 234, 234 against 224, 241, 223; both stop on their best candidate)."""
    import cma
    from optbench.pressure.search import CMAES
    d, lam = 20, 12
    scale = 10 ** (1.5 * np.arange(d) / (d - 1))
    f = lambda x: ((scale * (x - 0.5)) ** 2).sum(-1)   # noqa: E731
    gens = []
    for seed in range(3):
        ours = CMAES(np.full((1, d), 0.3), lam, 0.05, [np.random.default_rng(seed)], (-100.0, 100.0))
        g, best = 0, np.inf      # stop as cma does: on the best candidate evaluated
        while best > 1e-8 and g < 3000:
            cand = ours.ask()
            ours.tell(cand, -f(cand))
            best = min(best, f(cand).min())
            g += 1
        es = cma.CMAEvolutionStrategy(np.full(d, 0.3), 0.05, {"popsize": lam, "CMA_diagonal": True,
                                                               "verbose": -9, "seed": seed + 1, "ftarget": 1e-8})
        es.optimize(f)
        gens.append((g, es.countiter))
    ours_mean, theirs_mean = np.mean([a for a, _ in gens]), np.mean([b for _, b in gens])
    assert ours_mean < 1.25 * theirs_mean, gens
