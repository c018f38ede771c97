"""Ground-truth domains: Gaussian mixtures whose density, score and class posterior are
exact (optbench/gold/gmm.py), so whether an output left the data is computed, not judged.

gmm2   d = 2, 4 classes of 2 components each: the picture (density, decision regions and
       trajectories can all be drawn).
gmm64  d = 64, 4 classes of 2 components, each a thin slab (std 0.05) around a random
       4-dimensional affine subspace: data on a low-dimensional manifold, as images are,
       so "off the manifold" is a direction an optimizer can take.

The mixture is drawn from a fixed seed by `random_mixture`; the pool is drawn from it with
another (numpy's Generator: the same stream on every platform). Splits per class: the
proxy learns from 100 examples (a finite-sample proxy), the judges and the GAN from
1,000, the diffusion model from the generator split."""
from __future__ import annotations

import functools

import numpy as np

from optbench.domains.base import Domain
from optbench.gold.gmm import GaussianMixture, MixtureReferee, random_mixture


class GMMDomain(Domain):
    num_classes = 4
    bounds = (-1.0, 1.0)
    splits = {"proxy_train": 100, "judge_train": 1000, "generator_train": 1000, "test": 250, "reference": 500}
    split_seed = 20261124
    shipped = True
    default_proxy = "proxy_mlp"
    judges = ("judge_mlp", "judge_wide", "judge_small")
    ensemble = ("judge_mlp", "judge_wide")
    feature_spaces = ("judge_mlp", "coords", "judge_wide")
    mixture_args: dict = {}

    @functools.cached_property
    def mixture(self) -> GaussianMixture:
        return random_mixture(self.shape[0], self.num_classes, **self.mixture_args)

    def gold(self) -> MixtureReferee:
        if "_gold" not in self.__dict__:
            self._gold = MixtureReferee(self.mixture)
        return self._gold

    def exact_models(self) -> dict:
        """The mixture's exact sampler, diffusion model and noisy posterior (shipped by
        `optbench train <domain> --only exact`)."""
        from optbench.models.exact import ExactDiffusion, ExactNoisyPosterior, MixtureSampler, mixture_in_model_range
        mixture = mixture_in_model_range(self)
        kwargs = {"dim": mixture.dim, "components": len(mixture.weights), "num_classes": mixture.num_classes}
        return {"sampler_exact": (MixtureSampler.of(mixture), kwargs, "exact sampler: best-of-n without generator error"),
                "diffusion_exact": (ExactDiffusion.of(mixture), kwargs, "the ideal noise predictor of the noised mixture"),
                "noisy_exact": (ExactNoisyPosterior.of(mixture), kwargs, "the exact noisy class posterior log p_t(y | x_t)")}

    def load_pool(self) -> tuple[np.ndarray, np.ndarray]:
        per_class = sum(self.splits.values())
        rng = np.random.default_rng([self.split_seed, 1])
        xs, ys = [], []
        for c in range(self.num_classes):
            x, y, _ = self.mixture.sample(per_class, rng, y=c)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


class GMM2(GMMDomain):
    name = "gmm2"
    shape = (2,)
    mixture_args = {"per_class": 2, "rank": 2, "seed": 2, "mean_scale": 0.55,
                    "spread": (0.03, 0.1), "floor": 0.0, "min_separation": 0.3}


class GMM64(GMMDomain):
    name = "gmm64"
    shape = (64,)
    mixture_args = {"per_class": 2, "rank": 4, "seed": 64, "mean_scale": 0.3,
                    "spread": (0.1, 0.25), "floor": 0.05}
