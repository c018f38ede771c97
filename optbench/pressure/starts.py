"""Starting points for input-space optimizers, drawn with per-sample seeds: sample i of
seed s depends only on (s, i), never on n or on the batch it is in."""
from __future__ import annotations

import numpy as np
import torch

from optbench.domains import get_domain
from optbench.rng import sample_rng

STARTS = ("real", "noise", "mean")
START_STREAM = 10**6 + 1   # seeds the real starts' permutation (real_sample's is 10**6)


def _rng(seed: int, i: int) -> np.random.Generator:
    return sample_rng(seed, i)


def make_starts(domain: str, start: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x0, target) for n samples.

    real:  a held-out test-split image, distinct within a seed for the first len(test)
           samples; the target is a random other class than its label.
    noise: uniform noise in the domain's bounds; any target.
    mean:  the mean generator-train example; any target.
    """
    dom = get_domain(domain)
    if start == "real":
        x_test, y_test = dom.load_split("test")
        # Without replacement: sample i takes row perm[i mod len(test)] of one permutation
        # per seed, so the first len(test) samples are distinct digits and sample i still
        # depends only on (seed, i).
        perm = np.random.default_rng([seed, START_STREAM]).permutation(len(x_test))
        picks = torch.from_numpy(perm[np.arange(n) % len(x_test)])
        # 1..9 classes on: never the true class
        offsets = torch.tensor([int(_rng(seed, i).integers(1, dom.num_classes)) for i in range(n)])
        x0 = x_test[picks].clone()
        target = (y_test[picks] + offsets) % dom.num_classes
        return x0, target
    targets = torch.tensor([int(_rng(seed, i).integers(0, dom.num_classes)) for i in range(n)])
    if start == "noise":
        x0 = torch.stack([torch.from_numpy(_rng(seed, i).random(dom.shape, dtype=np.float32))
                          for i in range(n)])
        lo, hi = dom.bounds
        return (x0 if (lo, hi) == (0.0, 1.0) else lo + (hi - lo) * x0), targets
    if start == "mean":
        x_gen, _ = dom.load_split("generator_train")
        return x_gen.mean(0, keepdim=True).repeat(n, *[1] * len(dom.shape)), targets
    raise ValueError(f"unknown start {start!r}; allowed: {', '.join(STARTS)}")


def real_sample(domain: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n held-out real images (test split) and their labels: the real-against-real
    baseline's sample."""
    x_test, y_test = get_domain(domain).load_split("test")
    perm = np.random.default_rng([seed, 10**6]).permutation(len(x_test))[:n]
    return x_test[perm].clone(), y_test[perm].clone()
