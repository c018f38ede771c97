"""digits8: scikit-learn's `load_digits`, 1,797 handwritten digits of 8x8 pixels with 17
grey levels (0..16), scaled to [0, 1]. A second shipped domain, 12x smaller than
MNIST's images, to see which findings are MNIST's and which are the method's.

Splits per class (the smallest class, 8, has 174 examples): proxy_train 40, judge_train
40, generator_train 50, test 20, reference 24; totals 400 / 400 / 500 / 200 / 240."""
from __future__ import annotations

import numpy as np

from optbench.domains.base import Domain


class Digits8(Domain):
    name = "digits8"
    num_classes = 10
    shape = (1, 8, 8)
    splits = {"proxy_train": 40, "judge_train": 40, "generator_train": 50, "test": 20, "reference": 24}
    split_seed = 20261124
    shipped = True

    def load_pool(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits
        d = load_digits()
        return (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64)
